"""A pinhole camera above a flat ground plane, with an optional curving road frame.

World coordinates in metres: ``X`` to the right, ``Y`` up from the ground, ``Z`` forward. The road
frame bends sideways by ``curvature * Z**2`` so that everything placed along the road follows the curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .config import CameraConfig

MIN_DEPTH = 0.3
"""Points nearer than this are clamped so that projections stay finite."""


@dataclass(frozen=True)
class Camera:
    """Projection from the road frame to image pixels (x right, y down)."""

    height: int
    width: int
    focal: float
    mount_height: float
    vanishing_x: float
    horizon: float
    curvature: float

    @classmethod
    def sample(cls, rng: np.random.Generator, config: CameraConfig, height: int, width: int) -> Camera:
        """Draw a camera from the configured ranges."""
        curvature = 0.0
        if rng.random() < config.curvature_prob:
            curvature = float(rng.uniform(-config.curvature_max, config.curvature_max))
        return cls(
            height=height,
            width=width,
            focal=float(rng.uniform(*config.focal)) * width,
            mount_height=float(rng.uniform(*config.mount_height)),
            vanishing_x=float(rng.uniform(*config.vanishing_x)) * width,
            horizon=float(rng.uniform(*config.horizon)) * height,
            curvature=curvature,
        )

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Project road-frame points; returns an array of shape ``broadcast(x, y, z).shape + (2,)``."""
        z = np.maximum(z, MIN_DEPTH)
        inv = self.focal / z
        if self.curvature:
            x = x + self.curvature * z * z
        px = x * inv + self.vanishing_x
        py = (self.mount_height - np.asarray(y, np.float64)) * inv + self.horizon
        out = np.empty(np.broadcast(px, py).shape + (2,))
        out[..., 0] = px
        out[..., 1] = py
        return out

    def point(self, x: float, y: float, z: float) -> tuple[float, float]:
        """Project a single point (scalar fast path)."""
        z = max(z, MIN_DEPTH)
        inv = self.focal / z
        return (self.vanishing_x + (x + self.curvature * z * z) * inv, self.horizon + (self.mount_height - y) * inv)

    def scale(self, z: float) -> float:
        """Pixels per metre for an upright object at depth ``z``."""
        return self.focal / max(z, MIN_DEPTH)

    @property
    def nearest_visible_depth(self) -> float:
        """Depth of the ground seen at the bottom image row."""
        return self.focal * self.mount_height / max(self.height - self.horizon, 1.0)

    def ground_depth(self, row: np.ndarray | float) -> np.ndarray:
        """Depth of the ground seen at image ``row`` (inf at and above the horizon)."""
        d = np.asarray(row, np.float64) - self.horizon
        with np.errstate(divide="ignore"):
            return np.where(d > 0, self.focal * self.mount_height / np.maximum(d, 1e-9), np.inf)


@lru_cache(maxsize=64)
def _unit_grid(n: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, n)


def depth_samples(z0: float, z1: float, n: int) -> np.ndarray:
    """``n`` geometrically spaced depths from ``z0`` to ``z1`` (a fast ``np.geomspace``)."""
    return z0 * (z1 / z0) ** _unit_grid(n)


class Billboard:
    """Maps upright local metres (u right, v up) at a ground point to pixels."""

    __slots__ = ("x", "y", "s", "m")

    def __init__(self, cam: Camera, x: float, z: float, base_y: float = 0.0, mirror: bool = False) -> None:
        self.x, self.y = cam.point(x, base_y, z)
        self.s = cam.scale(z)
        self.m = -1.0 if mirror else 1.0

    def __call__(self, uv: np.ndarray) -> np.ndarray:
        uv = np.asarray(uv, np.float64)
        out = np.empty(uv.shape)
        out[..., 0] = uv[..., 0] * (self.m * self.s) + self.x
        out[..., 1] = self.y - uv[..., 1] * self.s
        return out
