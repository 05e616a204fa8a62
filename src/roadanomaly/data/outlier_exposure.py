"""Outlier exposure: paste outlier objects into inlier training images on the fly.

Sources of objects (:func:`make_source` parses a command-line spelling):

- ``synth`` / ``synth:SEED``: the SynthRoads outlier family (:mod:`~roadanomaly.data.synthroads.outlier_cutouts`);
- a folder of RGBA cut-outs (``*.png`` with an alpha channel) or of (image, instance mask) pairs
  (``images/<stem>.*`` + ``masks/<stem>.png``, every non-zero mask value one instance);
- ``coco:ROOT``: COCO instance annotations (``ROOT/annotations/instances_<split>.json`` + ``ROOT/<split>/``),
  polygons only, crowds and the classes Cityscapes already knows (person, vehicles, traffic lights...) skipped.

:class:`OutlierPaster` puts ``count`` objects into an image with probability ``probability``: standing on the
drivable surface (road, sidewalk) with a perspective-aware size (proportional to the distance of the foot below
the horizon, estimated as the top of the drivable area), or anywhere in the lower part of the image; optional
colour matching to the surroundings and edge feathering. The result says exactly where objects are: an instance
mask is alpha >= 0.5 of what remains visible; pixels blended with 0 < alpha < 0.5 become void, so no pixel changes
without being labelled anomaly or void, and no pixel is labelled anomaly without a pasted object.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from roadanomaly.data.io import read_image
from roadanomaly.data.labels import IGNORE_INDEX
from roadanomaly.data.synthroads.canvas import ensure_changed
from roadanomaly.data.synthroads.classes import ROAD, SIDEWALK
from roadanomaly.data.synthroads.outlier_cutouts import Cutout, synth_cutout
from roadanomaly.errors import UserError

VOID = IGNORE_INDEX
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
COCO_KNOWN = frozenset(
    {"person", "bicycle", "car", "motorcycle", "bus", "train", "truck", "traffic light", "stop sign"}
)
"""COCO categories that are Cityscapes classes (or parts of their scenes): never pasted as outliers."""


class OutlierSource(Protocol):
    """Anything that draws cut-outs."""

    def draw(self, rng: np.random.Generator) -> Cutout: ...


@dataclass(frozen=True)
class SynthOutlierSource:
    """The SynthRoads outlier family, drawn at ``size`` pixels."""

    size: int = 96

    def draw(self, rng: np.random.Generator) -> Cutout:
        return synth_cutout(rng, self.size)


def _crop_to_alpha(rgb: np.ndarray, alpha: np.ndarray) -> Cutout:
    ys, xs = np.nonzero(alpha > 0)
    box = slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)
    return Cutout(np.ascontiguousarray(rgb[box]), np.ascontiguousarray(alpha[box]).astype(np.float32))


class FolderSource:
    """RGBA cut-outs (``*.png`` with alpha) or ``images/`` + ``masks/`` pairs under ``root``, read on demand."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(self.root, "outlier source is not a folder")
        self.items: list[tuple[Path, Path | None, int | None]] = []
        if (self.root / "images").is_dir() and (self.root / "masks").is_dir():
            for image in sorted(p for p in (self.root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                mask = self.root / "masks" / f"{image.stem}.png"
                if not mask.is_file():
                    raise UserError(image, f"has no instance mask {mask.name} in {mask.parent}")
                ids = np.unique(np.asarray(cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)))
                self.items += [(image, mask, int(i)) for i in ids if i != 0]
        else:
            for path in sorted(self.root.glob("*.png")):
                if cv2.imread(str(path), cv2.IMREAD_UNCHANGED).ndim == 3 and _channels(path) == 4:
                    self.items.append((path, None, None))
        if not self.items:
            raise UserError(self.root, "no RGBA cut-outs (*.png with alpha) nor images/ + masks/ pairs found")

    def __len__(self) -> int:
        return len(self.items)

    def draw(self, rng: np.random.Generator) -> Cutout:
        image, mask, value = self.items[int(rng.integers(len(self.items)))]
        if mask is None:
            rgba = cv2.imread(str(image), cv2.IMREAD_UNCHANGED)
            rgb = cv2.cvtColor(rgba[..., :3], cv2.COLOR_BGR2RGB)
            return _crop_to_alpha(rgb, rgba[..., 3].astype(np.float32) / 255.0)
        rgb = read_image(image)
        ids = np.asarray(cv2.imread(str(mask), cv2.IMREAD_UNCHANGED))
        if ids.shape[:2] != rgb.shape[:2]:
            raise UserError(mask, f"mask size {ids.shape[:2]} differs from its image's {rgb.shape[:2]}")
        return _crop_to_alpha(rgb, (ids == value).astype(np.float32))


def _channels(path: Path) -> int:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return 1 if image.ndim == 2 else image.shape[2]


class CocoSource:
    """Objects from COCO instance annotations: ``root/annotations/instances_<split>.json`` + ``root/<split>/``."""

    def __init__(self, root: str | Path, split: str = "train2017", min_area: float = 1000.0) -> None:
        self.root = Path(root)
        ann = self.root / "annotations" / f"instances_{split}.json"
        if not ann.is_file():
            raise UserError(ann, "COCO instance annotations not found")
        try:
            data = json.loads(ann.read_text())
        except (OSError, ValueError) as error:
            raise UserError(ann, f"not readable JSON ({error})") from None
        known = {c["id"] for c in data.get("categories", []) if c.get("name") in COCO_KNOWN}
        files = {im["id"]: im["file_name"] for im in data.get("images", [])}
        self.images = self.root / split
        self.items = [
            (files[a["image_id"]], a["bbox"], a["segmentation"])
            for a in data.get("annotations", [])
            if not a.get("iscrowd") and isinstance(a.get("segmentation"), list) and a.get("area", 0) >= min_area
            and a.get("category_id") not in known and a.get("image_id") in files
        ]  # fmt: skip
        if not self.items:
            raise UserError(ann, "no usable (polygon, non-crowd, outlier-class) annotations")

    def draw(self, rng: np.random.Generator) -> Cutout:
        name, (x, y, w, h), polygons = self.items[int(rng.integers(len(self.items)))]
        rgb = read_image(self.images / name)
        mask = np.zeros(rgb.shape[:2], np.uint8)
        for poly in polygons:
            pts = np.asarray(poly, np.float64).reshape(-1, 2)
            cv2.fillPoly(mask, [np.rint(pts * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
        if not mask.any():
            x0, y0 = int(x), int(y)
            mask[y0 : y0 + max(1, int(h)), x0 : x0 + max(1, int(w))] = 1
        return _crop_to_alpha(rgb, mask.astype(np.float32))


def make_source(spec: str) -> OutlierSource:
    """``synth``, ``synth:SIZE``, ``coco:ROOT`` or a folder path -> a source."""
    if spec == "synth" or spec.startswith("synth:"):
        size = spec.partition(":")[2]
        if size and not size.isdigit():
            raise UserError(None, f"bad outlier source {spec!r}: use synth or synth:SIZE (pixels)")
        return SynthOutlierSource(int(size) if size else 96)
    if spec.startswith("coco:"):
        return CocoSource(spec[5:])
    return FolderSource(spec)


@dataclass(frozen=True)
class PasteConfig:
    """How objects are pasted. Heights are fractions of the image height."""

    probability: float = 1.0
    """Chance that an image receives objects at all."""
    count: tuple[int, int] = (1, 3)
    height: tuple[float, float] = (0.15, 0.5)
    """Object height at the bottom row of the image (perspective) or anywhere (no drivable surface)."""
    perspective: bool = True
    on_drivable: float = 0.8
    """Chance that an object stands on the drivable surface (when the image has one)."""
    drivable: tuple[int, ...] = (ROAD, SIDEWALK)
    min_height: int = 6
    feather: float = 0.0
    """Gaussian sigma (pixels) of the alpha edge; 0 = hard edges."""
    colour_match: float = 0.0
    """0..1: how far the object's colour statistics move towards its surroundings'."""
    min_pixels: int = 4
    """Instances left with fewer visible pixels are made void instead."""

    def __post_init__(self) -> None:
        if not 0 <= self.probability <= 1:
            raise UserError(None, f"pasting probability must be in [0, 1], got {self.probability}")
        if not 0 <= self.colour_match <= 1:
            raise UserError(None, f"colour matching must be in [0, 1], got {self.colour_match}")
        if self.count[0] < 0 or self.count[1] < self.count[0]:
            raise UserError(None, f"bad object count range {self.count}")


@dataclass(frozen=True)
class PastedSample:
    """``image`` (H, W, 3) uint8; ``labels`` train ids with pasted (and half-blended) pixels void;
    ``instances`` (N, H, W) bool, one mask per visible pasted object."""

    image: np.ndarray
    labels: np.ndarray
    instances: np.ndarray

    @property
    def anomaly_mask(self) -> np.ndarray:
        """0 inlier, 1 anomaly, 255 void: the benchmark convention."""
        out = np.where(self.labels == VOID, VOID, 0).astype(np.uint8)
        out[self.instances.any(axis=0)] = 1
        return out


def _resize_cutout(cutout: Cutout, height: int) -> Cutout:
    h, w = cutout.alpha.shape
    scale = height / h
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return Cutout(cv2.resize(cutout.rgb, size, interpolation=interp), cv2.resize(cutout.alpha, size, interpolation=interp))


class OutlierPaster:
    """Pastes objects from ``sources`` (chosen uniformly) into inlier images."""

    def __init__(self, sources: Sequence[OutlierSource], config: PasteConfig = PasteConfig()) -> None:
        if not sources:
            raise UserError(None, "no outlier source given")
        self.sources, self.config = list(sources), config

    def _place(self, rng: np.random.Generator, labels: np.ndarray) -> tuple[float, float, float]:
        """(foot x, foot y, object height in pixels)."""
        c, (height, width) = self.config, labels.shape
        frac = float(rng.uniform(*c.height))
        drivable = np.isin(labels, c.drivable)
        if drivable.any() and rng.random() < c.on_drivable:
            ys, xs = np.nonzero(drivable)
            k = int(rng.integers(len(ys)))
            fx, fy = float(xs[k]), float(ys[k]) + 1.0
            if c.perspective:
                horizon = float(ys.min())
                frac *= (fy - horizon) / max(1.0, height - horizon)
            return fx, fy, max(float(c.min_height), frac * height)
        fx, fy = float(rng.uniform(0, width)), float(rng.uniform(0.3 * height, height))
        return fx, fy, max(float(c.min_height), frac * height * 0.6)

    def _colour_match(self, rgb: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
        s = self.config.colour_match
        obj = rgb.reshape(-1, 3).astype(np.float32)[alpha.ravel() > 0.5]
        bg = background.reshape(-1, 3).astype(np.float32)
        if len(obj) < 2:
            return rgb
        mo, so, mb, sb = obj.mean(0), obj.std(0) + 1e-3, bg.mean(0), bg.std(0) + 1e-3
        target_std = so * (1 - s) + sb * s
        out = (rgb.astype(np.float32) - mo) / so * target_std + mo * (1 - s) + mb * s
        return np.clip(out, 0, 255).astype(np.uint8)

    def paste(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> PastedSample:
        """A copy of (``image``, ``labels``) with objects pasted; the inputs are not modified."""
        if image.shape[:2] != labels.shape:
            raise ValueError(f"image {image.shape} and labels {labels.shape} differ in size")
        c, (height, width) = self.config, labels.shape
        out, out_labels = image.copy(), labels.copy()
        blended = np.zeros(labels.shape, bool)
        masks: list[np.ndarray] = []
        count = int(rng.integers(c.count[0], c.count[1] + 1)) if rng.random() < c.probability else 0
        for _ in range(count):
            source = self.sources[int(rng.integers(len(self.sources)))]
            fx, fy, obj_h = self._place(rng, labels)
            cut = _resize_cutout(source.draw(rng), max(1, round(obj_h)))
            h, w = cut.alpha.shape
            x0, y0 = round(fx - w / 2), round(fy - h)
            ya, yb, xa, xb = max(0, y0), min(height, y0 + h), max(0, x0), min(width, x0 + w)
            if ya >= yb or xa >= xb:
                continue
            alpha = cut.alpha[ya - y0 : yb - y0, xa - x0 : xb - x0]
            if c.feather > 0:
                alpha = cv2.GaussianBlur(np.pad(alpha, 8), (0, 0), c.feather)[8:-8, 8:-8] * (alpha > 0)
            else:  # hard edges: every touched pixel is fully the object's
                alpha = (alpha >= 0.5).astype(np.float32)
            rgb = cut.rgb[ya - y0 : yb - y0, xa - x0 : xb - x0]
            region = out[ya:yb, xa:xb]
            if c.colour_match > 0:
                rgb = self._colour_match(rgb, alpha, region)
            before = region.copy()
            a = alpha[..., None]
            mixed = np.rint(a * rgb.astype(np.float32) + (1 - a) * region.astype(np.float32)).astype(np.uint8)
            solid = alpha >= 0.5
            np.copyto(region, mixed, where=(alpha > 0)[..., None])
            ensure_changed(region, before, solid)
            mask = np.zeros(labels.shape, bool)
            mask[ya:yb, xa:xb] = solid
            for m in masks:
                m &= ~mask
            masks.append(mask)
            touched = np.zeros(labels.shape, bool)
            touched[ya:yb, xa:xb] = alpha > 0
            blended = (blended | touched) & ~mask
        kept = [m for m in masks if m.sum() >= c.min_pixels]
        hit = np.zeros(labels.shape, bool)
        for m in masks:
            hit |= m
        out_labels[hit | blended] = VOID
        instances = np.stack(kept) if kept else np.zeros((0, height, width), bool)
        return PastedSample(out, out_labels, instances)


@dataclass(frozen=True)
class SegmentTargets:
    """Mask-classification targets of one image: ``masks`` (T, H, W) bool, ``anomaly`` (T,) bool (False =
    Normal) and ``classes`` (T,) train ids of the Normal segments (-1 for pasted instances)."""

    masks: np.ndarray
    anomaly: np.ndarray
    classes: np.ndarray


def segment_targets(labels: np.ndarray, instances: np.ndarray, num_classes: int = 19) -> SegmentTargets:
    """One Normal segment per train id present in ``labels`` (void excluded) and one Anomaly per instance."""
    ids = [int(i) for i in np.unique(labels) if i < num_classes]
    normal = [labels == i for i in ids]
    masks = np.stack([*normal, *instances]) if normal or len(instances) else np.zeros((0, *labels.shape), bool)
    anomaly = np.array([False] * len(normal) + [True] * len(instances), bool)
    classes = np.array(ids + [-1] * len(instances), np.int64)
    return SegmentTargets(masks.astype(bool), anomaly, classes)
