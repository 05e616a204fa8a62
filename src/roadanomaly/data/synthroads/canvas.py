"""Drawing primitives that paint an image and its label map with exactly the same pixels.

Objects are compiled into lists of ops (polygons, ellipses, polylines) when a scene is planned;
rendering replays the ops on an RGB base image and a label map with identical cv2 calls
(no anti-aliasing, sub-pixel vertex precision), so labels are exactly aligned with drawn pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import cv2
import numpy as np

SHIFT = 4
"""Fractional bits of vertex coordinates handed to cv2."""
_ONE = float(1 << SHIFT)

ANOMALY_LABEL = 254
"""Internal label of anomaly pixels while rendering (written as void, 255)."""

Color = tuple[int, int, int]


def fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates (..., 2) to cv2 fixed-point int32."""
    return np.rint(np.asarray(points) * _ONE).astype(np.int32)


def _channel(c: float) -> int:
    return 0 if c <= 0.0 else 255 if c >= 255.0 else int(c)


def color(rgb: Sequence[float]) -> Color:
    """Clip and round a colour to a tuple of ints, as cv2 wants it."""
    return (_channel(rgb[0]), _channel(rgb[1]), _channel(rgb[2]))


def shade(rgb: Sequence[float], factor: float) -> Color:
    """A colour scaled in brightness."""
    return color([c * factor for c in rgb])


@dataclass(frozen=True, slots=True)
class Poly:
    """Filled polygons, an int32 fixed-point array (n, k, 2) or a list of (k_i, 2) arrays.

    cv2 fills several polygons of one call with the even-odd rule: overlaps become holes (used for rings).
    """

    polys: Union[np.ndarray, list]
    color: Color
    label: int

    def draw(self, img: np.ndarray | None, lab: np.ndarray) -> None:
        if img is not None:
            cv2.fillPoly(img, self.polys, self.color, cv2.LINE_8, SHIFT)
        cv2.fillPoly(lab, self.polys, self.label, cv2.LINE_8, SHIFT)


@dataclass(frozen=True, slots=True)
class Ellipse:
    """A filled ellipse (thickness < 0) or an elliptic ring/arc."""

    center: tuple[int, int]
    axes: tuple[int, int]
    angle: float
    color: Color
    label: int
    thickness: int = -1
    start: float = 0.0
    end: float = 360.0

    def draw(self, img: np.ndarray | None, lab: np.ndarray) -> None:
        args = (self.center, self.axes, self.angle, self.start, self.end)
        if img is not None:
            cv2.ellipse(img, *args, self.color, self.thickness, cv2.LINE_8, SHIFT)
        cv2.ellipse(lab, *args, self.label, self.thickness, cv2.LINE_8, SHIFT)


@dataclass(frozen=True, slots=True)
class Lines:
    """Polylines of a given pixel thickness."""

    polys: Union[np.ndarray, list]
    color: Color
    label: int
    thickness: int = 1
    closed: bool = False

    def draw(self, img: np.ndarray | None, lab: np.ndarray) -> None:
        if img is not None:
            cv2.polylines(img, self.polys, self.closed, self.color, self.thickness, cv2.LINE_8, SHIFT)
        cv2.polylines(lab, self.polys, self.closed, self.label, self.thickness, cv2.LINE_8, SHIFT)


Op = Union[Poly, Ellipse, Lines]


class Shape:
    """A growing list of ops with float-coordinate helpers."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def poly(self, points: np.ndarray, rgb: Sequence[float], label: int) -> None:
        """One polygon (k, 2) or a batch of same-size polygons (n, k, 2), in float pixels."""
        pts = fixed(points)
        if pts.ndim == 2:
            pts = pts[None]
        if pts.shape[0]:
            self.ops.append(Poly(pts, color(rgb), label))

    def ellipse(
        self,
        center: Sequence[float],
        axes: Sequence[float],
        rgb: Sequence[float],
        label: int,
        angle: float = 0.0,
        thickness: int = -1,
        start: float = 0.0,
        end: float = 360.0,
    ) -> None:
        """An ellipse with float centre and semi-axes (in pixels)."""
        c = (int(round(center[0] * _ONE)), int(round(center[1] * _ONE)))
        a = (max(0, int(round(axes[0] * _ONE))), max(0, int(round(axes[1] * _ONE))))
        self.ops.append(Ellipse(c, a, float(angle), color(rgb), label, int(thickness), float(start), float(end)))

    def lines(
        self, points: np.ndarray, rgb: Sequence[float], label: int, thickness: float = 1.0, closed: bool = False
    ) -> None:
        """A polyline (k, 2) or a batch of polylines (n, k, 2), in float pixels."""
        pts = fixed(points)
        if pts.ndim == 2:
            pts = pts[None]
        if pts.shape[0]:
            self.ops.append(Lines(pts, color(rgb), label, max(1, int(round(thickness))), closed))

    def extend(self, other: Shape) -> None:
        self.ops.extend(other.ops)


def draw_ops(ops: Sequence[Op], img: np.ndarray | None, lab: np.ndarray) -> None:
    """Replay ops in order onto an image (optional) and a label map."""
    for op in ops:
        op.draw(img, lab)


def silhouette(ops: Sequence[Op], height: int, width: int) -> np.ndarray:
    """Boolean mask of all pixels the ops would paint."""
    mask = np.zeros((height, width), np.uint8)
    for op in ops:
        # every op paints label 1 regardless of its own label
        if isinstance(op, Poly):
            cv2.fillPoly(mask, op.polys, 1, cv2.LINE_8, SHIFT)
        elif isinstance(op, Ellipse):
            cv2.ellipse(mask, op.center, op.axes, op.angle, op.start, op.end, 1, op.thickness, cv2.LINE_8, SHIFT)
        else:
            cv2.polylines(mask, op.polys, op.closed, 1, op.thickness, cv2.LINE_8, SHIFT)
    return mask.astype(bool)


@dataclass(frozen=True, slots=True)
class Shadow:
    """Ground polygons (fixed point) that darken whatever was drawn below them by ``factor``."""

    polys: Union[np.ndarray, list]
    factor: float


def apply_shadows(img: np.ndarray, shadows: Sequence[Shadow]) -> np.ndarray:
    """Darken ``img`` (uint8 RGB) under the shadow polygons; overlapping shadows do not compound."""
    if not shadows:
        return img
    out = img.copy()
    mask = np.zeros(img.shape[:2], np.uint8)
    for factor in sorted({s.factor for s in shadows}, reverse=True):
        mask[:] = 0
        for s in shadows:
            if s.factor == factor:
                for poly in s.polys:  # one at a time: a single fillPoly call would XOR overlaps
                    cv2.fillPoly(mask, [poly], 1, cv2.LINE_8, SHIFT)
        cv2.copyTo(cv2.convertScaleAbs(img, alpha=factor), mask, out)
    return out


def ensure_changed(image: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> None:
    """Nudge (in place) the rare masked pixels equal to ``clean`` so that ``mask`` == changed pixels."""
    same = mask & (image == clean).all(axis=-1)
    if same.any():
        image[same, 0] ^= 1
