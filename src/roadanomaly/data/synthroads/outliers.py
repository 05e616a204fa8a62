"""The outlier-exposure family: abstract shapes pasted onto any inlier image.

Shapes and textures (random polygons, stars, rotated checkerboards, striped blobs, ring targets,
thresholded-noise patches, and the shaded, photograph-like cut-outs of :mod:`.outlier_cutouts`) differ on
purpose from both test families, so that a model trained to flag them is not simply shown the test anomalies.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .anomaly_shapes import radial_blob
from .canvas import ensure_changed
from .classes import VOID
from .outlier_cutouts import synth_cutout

SHAPES = ("polygon", "star", "checker", "stripes", "rings", "patch", "cutout")
PATTERNS = ("noise", "checker", "stripes", "rings", "gradient")


@dataclass(frozen=True)
class OutlierConfig:
    """How many outliers to paste and how large (radius as a fraction of the image height)."""

    count: tuple[int, int] = (1, 3)
    radius: tuple[float, float] = (0.04, 0.2)
    top: float = 0.25
    """Centres are drawn below this fraction of the image height."""
    shapes: tuple[str, ...] = SHAPES


@dataclass(frozen=True)
class OutlierSample:
    """Image with outliers, train ids with outlier pixels void (255), and the outlier mask (0/1)."""

    image: np.ndarray
    labels: np.ndarray
    mask: np.ndarray


def _outline(rng: np.random.Generator, kind: str, r: float) -> np.ndarray:
    """Closed outline (n, 2) around the origin, in pixels."""
    if kind == "polygon":
        n = int(rng.integers(3, 10))
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.4, 1.0, n)
        return np.stack([rad * np.cos(t), rad * np.sin(t)], axis=-1)
    if kind == "star":
        n = int(rng.integers(4, 10))
        t = rng.uniform(0, 2 * np.pi) + np.pi * np.arange(2 * n) / n
        rad = np.where(np.arange(2 * n) % 2 == 0, r, r * rng.uniform(0.3, 0.6))
        return np.stack([rad * np.cos(t), rad * np.sin(t)], axis=-1)
    if kind == "checker":
        a, b, angle = r, r * rng.uniform(0.4, 1.0), rng.uniform(0, np.pi)
        corners = np.array([[-a, -b], [a, -b], [a, b], [-a, b]])
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return corners @ rot.T
    if kind == "rings":
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        return np.stack([r * np.cos(t), r * rng.uniform(0.5, 1.0) * np.sin(t)], axis=-1)
    return radial_blob(rng, 20, 0.35) * r


def _pattern(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """A float32 (h, w, 3) texture."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c1, c2 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    period = float(rng.uniform(3, max(4.0, min(h, w) / 3)))
    if kind == "checker":
        t = ((np.floor(u / period) + np.floor(v / period)) % 2)[..., None]
    elif kind == "stripes":
        t = (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)[..., None]
    elif kind == "rings":
        t = (np.sin(2 * np.pi * np.hypot(xx - w / 2, yy - h / 2) / period) > 0).astype(np.float32)[..., None]
    elif kind == "gradient":
        t = ((u - u.min()) / max(float(np.ptp(u)), 1.0))[..., None]
    else:
        t = np.clip(0.5 + 0.35 * rng.standard_normal((h, w, 1)), 0, 1).astype(np.float32)
    out = c1 * (1 - t) + c2 * t
    return out + rng.normal(0, 6, (h, w, 3)).astype(np.float32)


def _paste_one(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, config: OutlierConfig) -> None:
    height, width = mask.shape
    kind = config.shapes[int(rng.integers(len(config.shapes)))]
    r = float(rng.uniform(*config.radius)) * height
    cx, cy = rng.uniform(0, width), rng.uniform(config.top * height, height)
    x0, y0 = int(max(0, np.floor(cx - r - 1))), int(max(0, np.floor(cy - r - 1)))
    x1, y1 = int(min(width, np.ceil(cx + r + 2))), int(min(height, np.ceil(cy + r + 2)))
    if x1 <= x0 or y1 <= y0:
        return
    local = np.zeros((y1 - y0, x1 - x0), np.uint8)
    if kind == "cutout":
        _paste_cutout(rng, image, mask, r, (cx, cy))
        return
    if kind == "patch":
        noise = cv2.GaussianBlur(rng.standard_normal(local.shape).astype(np.float32), (0, 0), max(1.0, r / 6))
        disc = np.zeros_like(local)
        cv2.ellipse(
            disc,
            (int(cx - x0), int(cy - y0)),
            (int(r), int(r * rng.uniform(0.5, 1.0))),
            float(rng.uniform(0, 180)),
            0,
            360,
            1,
            -1,
        )
        local[(noise > np.quantile(noise, 0.4)) & (disc > 0)] = 1
    else:
        pts = _outline(rng, kind, r) + [cx - x0, cy - y0]
        cv2.fillPoly(local, [np.rint(pts * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    if kind in ("checker", "stripes", "rings"):
        pattern = kind
    else:
        pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
    texture = _pattern(rng, pattern, *local.shape)
    sel = local.astype(bool)
    region = image[y0:y1, x0:x1]
    region[sel] = np.clip(texture[sel], 0, 255).astype(np.uint8)
    mask[y0:y1, x0:x1][sel] = 1


def _paste_cutout(
    rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, r: float, centre: tuple[float, float]
) -> None:
    """A shaded synthetic object of height ~2r centred at ``centre``; pixels and mask clipped to the image."""
    cut = synth_cutout(rng, max(8, int(2 * r)))
    h, w = cut.alpha.shape
    x0, y0 = round(centre[0] - w / 2), round(centre[1] - h / 2)
    ya, yb, xa, xb = max(0, y0), min(mask.shape[0], y0 + h), max(0, x0), min(mask.shape[1], x0 + w)
    if ya >= yb or xa >= xb:
        return
    sel = cut.alpha[ya - y0 : yb - y0, xa - x0 : xb - x0] > 0
    image[ya:yb, xa:xb][sel] = cut.rgb[ya - y0 : yb - y0, xa - x0 : xb - x0][sel]
    mask[ya:yb, xa:xb][sel] = 1


def paste_outliers(
    image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, config: OutlierConfig | None = None
) -> OutlierSample:
    """Paste outlier shapes on a copy of an inlier image.

    Returns the new image, the train ids with outlier pixels set to 255, and a uint8 mask that is 1
    exactly on the pixels that changed (0 elsewhere). ``image`` and ``labels`` are not modified.
    """
    config = config or OutlierConfig()
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape} and labels {labels.shape} differ in size")
    out = image.copy()
    mask = np.zeros(labels.shape, np.uint8)
    for _ in range(int(rng.integers(config.count[0], config.count[1] + 1))):
        _paste_one(rng, out, mask, config)
    hit = mask.astype(bool)
    ensure_changed(out, image, hit)
    out_labels = labels.copy()
    out_labels[hit] = VOID
    return OutlierSample(out, out_labels, mask)
