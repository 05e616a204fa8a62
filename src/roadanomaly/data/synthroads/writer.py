"""Write SynthRoads to disk in the real formats: a Cityscapes tree and anomaly validation bundles.

Cityscapes: ``leftImg8bit/<split>/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png`` (RGB) and
``gtFine/<split>/<city>/<city>_<seq:06d>_<frame:06d>_gtFine_labelIds.png`` (8-bit grey, Cityscapes
label ids; void is written as 0 'unlabeled'). Bundles: ``<Name>/images/<stem>.<ext>`` and
``<Name>/labels_masks/<stem>.png`` (8-bit grey, 0 inlier / 1 anomaly / 255 void).
The Cityscapes writer only ever renders inlier scenes: it does not import the anomaly modules.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import cv2
import numpy as np
from PIL import Image

from ..labels import NUM_CLASSES, TRAIN_ID_TO_ID
from .config import SceneConfig
from .scene import render_scene

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)``."""

CITIES: dict[str, tuple[str, ...]] = {
    "train": ("synthville", "pixelburg", "procton", "rasterhaven"),
    "val": ("renderdorf", "seedham"),
    "test": ("noiseford", "vertexton"),
}
FRAME = 19
"""Cityscapes annotates the 20th frame of each snippet."""
IMAGE_EXTS = ("png", "webp", "jpg")


def _train_to_label_id_lut() -> np.ndarray:
    lut = np.zeros(256, np.uint8)  # void and unknown -> 0 'unlabeled'
    lut[:NUM_CLASSES] = TRAIN_ID_TO_ID
    return lut


TRAIN_TO_LABEL_ID = _train_to_label_id_lut()


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """Map train ids (0..18, 255 void) to Cityscapes label ids as stored in ``*_labelIds.png``."""
    return TRAIN_TO_LABEL_ID[train_ids]


def cityscapes_name(split: str, index: int) -> tuple[str, str]:
    """(city, stem prefix) of image ``index`` of ``split``; stable whatever the number of images."""
    cities = CITIES.get(split, (f"synth{split}",))
    city = cities[index % len(cities)]
    return city, f"{city}_{index // len(cities):06d}_{FRAME:06d}"


def write_png(path: Path, array: np.ndarray) -> None:
    """Write an RGB (H, W, 3) or grey (H, W) uint8 array as an 8-bit PNG."""
    if array.dtype != np.uint8:
        raise TypeError(f"PNG arrays must be uint8, got {array.dtype}")
    data = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    ok, buf = cv2.imencode(".png", data, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an RGB image; the format follows the suffix (webp is lossless, jpg quality 95)."""
    ext = path.suffix.lower().lstrip(".")
    if ext == "png":
        write_png(path, image)
    elif ext == "webp":
        Image.fromarray(image).save(path, format="WEBP", lossless=True, quality=0, method=0)
    elif ext in ("jpg", "jpeg"):
        Image.fromarray(image).save(path, format="JPEG", quality=95)
    else:
        raise ValueError(f"unsupported image extension {ext!r}; use one of {IMAGE_EXTS}")


@dataclass(frozen=True)
class _CityscapesJob:
    root: str
    split: str
    seed: int
    config: SceneConfig

    def __call__(self, index: int) -> int:
        city, stem = cityscapes_name(self.split, index)
        sample = render_scene(self.seed, self.split, index, self.config)
        image_dir = Path(self.root, "leftImg8bit", self.split, city)
        label_dir = Path(self.root, "gtFine", self.split, city)
        write_png(image_dir / f"{stem}_leftImg8bit.png", sample.image)
        write_png(label_dir / f"{stem}_gtFine_labelIds.png", train_ids_to_label_ids(sample.labels))
        return index


@dataclass(frozen=True)
class _BundleJob:
    bundle: str
    family: str
    stem_prefix: str
    image_ext: str
    seed: int
    config: SceneConfig

    def __call__(self, index: int) -> int:
        from .anomalies import render_anomaly_sample  # only bundles need the anomaly code

        sample = render_anomaly_sample(self.family, self.seed, index, config=self.config)
        stem = f"{self.stem_prefix}_{index:05d}"
        write_image(Path(self.bundle, "images", f"{stem}.{self.image_ext}"), sample.image)
        write_png(Path(self.bundle, "labels_masks", f"{stem}.png"), sample.mask)
        return index


def _run(job: Callable[[int], int], count: int, stage: str, progress: Progress | None, workers: int) -> None:
    """Run ``job`` on indices 0..count-1, in worker processes when ``workers`` > 1."""
    if progress:
        progress(stage, 0, count)
    indices: Iterable[int] = range(count)
    if workers > 1 and count > 1:
        with multiprocessing.get_context("spawn" if os.name == "nt" else "fork").Pool(workers) as pool:
            for done, _ in enumerate(pool.imap_unordered(job, indices, chunksize=4), 1):
                if progress:
                    progress(stage, done, count)
        return
    for done, index in enumerate(indices, 1):
        job(index)
        if progress:
            progress(stage, done, count)


def _resolve_workers(workers: int) -> int:
    return (os.cpu_count() or 1) if workers <= 0 else workers


def write_cityscapes(
    root: str | os.PathLike,
    split_counts: Mapping[str, int] | None = None,
    size: tuple[int, int] = (256, 512),
    seed: int = 0,
    config: SceneConfig | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> Path:
    """Write inlier scenes as a Cityscapes tree under ``root``; returns ``root``.

    ``workers`` > 1 renders in parallel processes (0: one per CPU); the output is identical either way.
    """
    split_counts = {"train": 100, "val": 20} if split_counts is None else dict(split_counts)
    config = (config or SceneConfig()).with_size(size)
    root = Path(root)
    for split, count in split_counts.items():
        if count < 0:
            raise ValueError(f"negative count for split {split!r}")
        for city in {cityscapes_name(split, i)[0] for i in range(min(count, len(CITIES.get(split, "x"))))}:
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        _run(
            _CityscapesJob(str(root), split, seed, config),
            count,
            f"cityscapes/{split}",
            progress,
            _resolve_workers(workers),
        )
    return root


def write_anomaly_bundle(
    root: str | os.PathLike,
    name: str,
    family: str,
    count: int,
    size: tuple[int, int] = (256, 512),
    seed: int = 0,
    image_ext: str | None = None,
    config: SceneConfig | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> Path:
    """Write ``count`` samples of an anomaly family as bundle ``<root>/<name>``; returns that folder."""
    from .anomalies import get_family

    fam = get_family(family)
    ext = (image_ext or fam.image_ext).lower().lstrip(".")
    if ext not in IMAGE_EXTS:
        raise ValueError(f"unsupported image extension {ext!r}; use one of {IMAGE_EXTS}")
    bundle = Path(root) / name
    (bundle / "images").mkdir(parents=True, exist_ok=True)
    (bundle / "labels_masks").mkdir(parents=True, exist_ok=True)
    config = (config or SceneConfig()).with_size(size)
    job = _BundleJob(str(bundle), fam.name, name.lower(), ext, seed, config)
    _run(job, count, f"bundle/{name}", progress, _resolve_workers(workers))
    return bundle


@dataclass(frozen=True)
class SynthRoadsPaths:
    """Where :func:`generate_synthroads` put everything."""

    root: Path
    cityscapes: Path
    bundle: Path
    anomaly: Path
    obstacle: Path
    counts: dict[str, int] = field(default_factory=dict)


def generate_synthroads(
    root: str | os.PathLike,
    train: int = 500,
    val: int = 100,
    anomaly: int = 100,
    obstacle: int = 100,
    size: tuple[int, int] = (256, 512),
    seed: int = 0,
    progress: Progress | None = None,
    workers: int = 1,
) -> SynthRoadsPaths:
    """Write the SynthRoads world: ``<root>/cityscapes`` and bundles ``<root>/bundle/SynthAnomaly``, ``SynthObstacle``.

    Also writes ``<root>/synthroads.json`` with the generation parameters.
    """
    root = Path(root)
    counts = {"train": train, "val": val, "SynthAnomaly": anomaly, "SynthObstacle": obstacle}
    cityscapes = write_cityscapes(
        root / "cityscapes", {"train": train, "val": val}, size, seed, progress=progress, workers=workers
    )
    bundle = root / "bundle"
    anomaly_dir = write_anomaly_bundle(
        bundle, "SynthAnomaly", "SynthAnomaly", anomaly, size, seed, progress=progress, workers=workers
    )
    obstacle_dir = write_anomaly_bundle(
        bundle, "SynthObstacle", "SynthObstacle", obstacle, size, seed, progress=progress, workers=workers
    )
    paths = SynthRoadsPaths(root, cityscapes, bundle, anomaly_dir, obstacle_dir, counts)
    manifest = {"generator": "roadanomaly.data.synthroads", "seed": seed, "size": list(size), "counts": counts}
    manifest["paths"] = {k: str(v) for k, v in asdict(paths).items() if isinstance(v, Path)}
    (root / "synthroads.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return paths
