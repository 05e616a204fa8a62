"""Finding the benchmark datasets under a data folder, whatever their layout.

Recognised, in ``root`` itself or in its direct subfolders:

- LostAndFound original (``leftImg8bit/`` + ``gtCoarse/``): one dataset per split, ``LostAndFound-<split>``;
- SMIYC download (``dataset_AnomalyTrack/``, ``dataset_ObstacleTrack/``): ``AnomalyTrack``, ``ObstacleTrack``;
- Road Anomaly original release (``frame_list.json`` + ``frames/``): ``RoadAnomaly``;
- every other subfolder with ``images/``: a benchmark bundle (:mod:`roadanomaly.data.bundle`).

Datasets are named by their canonical name; ``names`` selects them case-insensitively by the name of their folder
or, when no folder is called so, by their canonical name (``LostAndFound`` selects all its splits). Two chosen
datasets with one name (say a ``RoadAnomaly`` bundle and the original ``RoadAnomaly_jpg`` release) are an error
that asks to choose one by folder name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadanomaly.data.bundle import BUNDLE_SPECS, discover_bundles
from roadanomaly.data.lostandfound import LostAndFound, lostandfound_splits
from roadanomaly.data.road_anomaly import RoadAnomalyOriginal, is_road_anomaly
from roadanomaly.data.smiyc import SmiycTrack, smiyc_track_name
from roadanomaly.errors import UserError

LAYOUT_HELP = (
    "expected <root>/<Name>/images + labels_masks, SMIYC's dataset_AnomalyTrack / dataset_ObstacleTrack, "
    "LostAndFound's leftImg8bit + gtCoarse, or Road Anomaly's frame_list.json + frames"
)


@dataclass(frozen=True)
class Found:
    """A dataset found on disk, not loaded yet: its name, the names that select it, and how to load it."""

    name: str
    folder: Path
    aliases: frozenset[str]  # lower-case names, besides the folder's, that select it
    load: Callable[[], Any]


def find_datasets(root: str | Path) -> list[Found]:
    """Every dataset under ``root`` (see the module docstring), in folder order; nothing is read yet."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(root, "data folder not found")
    found: list[Found] = []
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        track = smiyc_track_name(folder)
        if track is not None and (folder / "images").is_dir():
            found.append(Found(track, folder, frozenset({track.lower()}), lambda f=folder: SmiycTrack(f)))
        elif is_road_anomaly(folder):
            found.append(Found("RoadAnomaly", folder, frozenset({"roadanomaly"}),
                               lambda f=folder: RoadAnomalyOriginal(f)))
        elif splits := lostandfound_splits(folder):
            for split in splits:
                name = f"LostAndFound-{split}"
                found.append(Found(name, folder, frozenset({name.lower(), "lostandfound"}),
                                   lambda f=folder, s=split: LostAndFound(f, s)))
        elif folder != root and (folder / "images").is_dir():
            found.append(Found(_bundle_name(folder.name), folder, frozenset(_bundle_aliases(folder.name)),
                               lambda r=root, n=folder.name: discover_bundles(r, [n])[0]))
    return found


def discover_datasets(root: str | Path, names: list[str] | None = None) -> list[Any]:
    """The datasets under ``root`` (all, or those ``names`` asks for, in that order), loaded.

    Each has ``name``, ``folder``, ``len()`` and ``[i] -> Sample(image, label, image_path, label_path)`` with labels
    0 / 1 / 255. Unknown ``names`` raise a ``UserError`` listing the available ones.
    """
    found = find_datasets(root)
    if not found:
        raise UserError(root, f"no datasets found ({LAYOUT_HELP})")
    chosen: list[Found] = []
    for name in names if names is not None else []:
        wanted = name.lower()
        matches = [e for e in found if e.folder.name.lower() == wanted] or [
            e for e in found if wanted in e.aliases | {e.name.lower()}]
        if not matches:
            available = ", ".join(dict.fromkeys(entry.name for entry in found))
            raise UserError(root, f"dataset {name!r} not found (available: {available})")
        chosen += [entry for entry in matches if entry not in chosen]
    chosen = chosen if names is not None else found
    for entry in chosen:
        twins = [e.folder.name for e in chosen if e.name == entry.name]
        if len(twins) > 1:
            raise UserError(root, f"{len(twins)} datasets are named {entry.name!r} (folders {', '.join(twins)}): "
                                  "choose one by its folder name with --datasets")
    return [entry.load() for entry in chosen]


def _bundle_name(folder: str) -> str:
    spec = next((s for s in BUNDLE_SPECS if folder.lower() in (f.lower() for f in s.folders)), None)
    return folder if spec is None else spec.name


def _bundle_aliases(folder: str) -> set[str]:
    spec = next((s for s in BUNDLE_SPECS if folder.lower() in (f.lower() for f in s.folders)), None)
    return set() if spec is None else {spec.name.lower(), *(f.lower() for f in spec.folders)}
