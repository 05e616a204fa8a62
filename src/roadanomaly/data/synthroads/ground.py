"""The ground plane: terrain, road with lane markings, kerbs, verges and paved sidewalks."""

from __future__ import annotations

import numpy as np

from .camera import Camera, depth_samples
from .canvas import Op, Shape
from .classes import ROAD, SIDEWALK, TERRAIN
from .palette import PALETTE, pick, scaled
from .street import SIDEWALK_HEIGHT, Side, Street

MARKING_DEPTH = 90.0
"""Lane markings are drawn up to this depth (beyond it they are below a pixel)."""


def strip(cam: Camera, x0: float, x1: float, y: float, z0: float, z1: float, n: int = 20) -> np.ndarray:
    """Polygon of the horizontal band ``x0..x1`` at height ``y`` between depths ``z0..z1``."""
    pts = cam.project(np.array([[x0], [x1]]), y, depth_samples(z0, z1, n))
    return np.concatenate([pts[0], pts[1, ::-1]], axis=0)


def vertical_strip(cam: Camera, x: float, y0: float, y1: float, z0: float, z1: float, n: int = 12) -> np.ndarray:
    """Polygon of the vertical band at lateral ``x`` from height ``y0`` to ``y1`` between depths ``z0..z1``."""
    pts = cam.project(x, np.array([[y0], [y1]]), depth_samples(z0, z1, n))
    return np.concatenate([pts[0], pts[1, ::-1]], axis=0)


def quads(cam: Camera, x0: np.ndarray, x1: np.ndarray, y: float, z0: np.ndarray, z1: np.ndarray) -> np.ndarray:
    """Batch of ground quads (n, 4, 2) with corners (x0,z0), (x1,z0), (x1,z1), (x0,z1)."""
    xs = np.stack(np.broadcast_arrays(x0, x1, x1, x0), axis=-1)
    zs = np.stack(np.broadcast_arrays(z0, z0, z1, z1), axis=-1)
    return cam.project(xs, y, zs)


def _side_ops(shape: Shape, rng: np.random.Generator, cam: Camera, side: Side, z0: float, z1: float) -> None:
    """Setback, verge, sidewalk with paving joints and the kerb of one side."""
    h = SIDEWALK_HEIGHT
    walk = pick(rng, PALETTE.sidewalk, 8.0)
    if side.setback > 0.05:
        if side.setback_paved:
            outer = scaled(walk, rng.uniform(0.85, 1.1))
            shape.poly(strip(cam, side.x(side.sidewalk_end), side.x(side.frontage), h, z0, z1), outer, SIDEWALK)
        else:
            grass = pick(rng, PALETTE.terrain, 10.0)
            shape.poly(strip(cam, side.x(side.sidewalk_end), side.x(side.frontage + 60.0), h, z0, z1), grass, TERRAIN)
    if side.verge > 0:
        shape.poly(strip(cam, side.x(0.0), side.x(side.verge), h, z0, z1), pick(rng, PALETTE.terrain, 10.0), TERRAIN)
    shape.poly(strip(cam, side.x(side.sidewalk_start), side.x(side.sidewalk_end), h, z0, z1), walk, SIDEWALK)
    # paving joints, only where they are at least a few pixels apart
    spacing = float(rng.uniform(1.0, 2.5))
    z_max = min(z1, np.sqrt(cam.focal * cam.mount_height * spacing / 3.0))
    joints = np.arange(np.ceil(z0 / spacing) * spacing, z_max, spacing)
    if joints.size:
        a = cam.project(side.x(side.sidewalk_start), h, joints)
        b = cam.project(side.x(side.sidewalk_end), h, joints)
        shape.lines(np.stack([a, b], axis=1), scaled(walk, 0.78), SIDEWALK, 1)
    kerb = pick(rng, PALETTE.kerb, 6.0)
    shape.poly(strip(cam, side.x(0.0), side.x(0.18), h, z0, z1), kerb, SIDEWALK)
    shape.poly(vertical_strip(cam, side.x(0.0), 0.0, h, z0, z1, 16), scaled(kerb, 0.8), SIDEWALK)


def _dashes(
    cam: Camera, x: float, width: float, dash: float, gap: float, phase: float, z0: float, z1: float
) -> np.ndarray:
    starts = np.arange(z0 + phase, z1, dash + gap)
    return quads(cam, x - width / 2, x + width / 2, 0.0, starts, starts + dash)


def _marking_ops(shape: Shape, rng: np.random.Generator, cam: Camera, street: Street, z0: float) -> None:
    """Lane lines, edge lines and an optional zebra crossing, all labelled road."""
    white = pick(rng, ((225, 225, 220), (200, 200, 195), (235, 232, 220)), 6.0)
    width = float(rng.uniform(0.1, 0.18))
    z1 = MARKING_DEPTH
    dash, gap = float(rng.uniform(2.5, 4.0)), float(rng.uniform(4.0, 9.0))
    polys = []
    for i, x in enumerate(street.lane_boundaries()):
        if i + 1 == street.oncoming_lanes:
            polys.append(strip(cam, x - width / 2, x + width / 2, 0.0, z0, z1, 16))
        else:
            polys.append(_dashes(cam, float(x), width, dash, gap, float(rng.uniform(0, dash + gap)), z0, z1))
    if rng.random() < 0.5:
        for x in (street.road_left + 0.3, street.road_right - 0.3):
            polys.append(strip(cam, x - width / 2, x + width / 2, 0.0, z0, z1, 16))
    for p in polys:
        shape.poly(p, white, ROAD)
    if street.crosswalk_depth is not None:
        zc = street.crosswalk_depth
        xs = np.arange(street.road_left + 0.4, street.road_right - 0.4, 1.0)
        length = float(rng.uniform(2.5, 4.0))
        shape.poly(quads(cam, xs, xs + 0.5, 0.0, np.full_like(xs, zc), np.full_like(xs, zc + length)), white, ROAD)


def ground_ops(rng: np.random.Generator, cam: Camera, street: Street, max_depth: float) -> list[Op]:
    """Ops that paint the whole ground plane below the horizon."""
    shape = Shape()
    z0 = max(0.4, 0.5 * cam.nearest_visible_depth)
    z1 = max_depth
    far_row = cam.point(0.0, 0.0, z1)[1] - 1.0
    rect = np.array(
        [[-1.0, far_row], [cam.width + 1.0, far_row], [cam.width + 1.0, cam.height + 1.0], [-1.0, cam.height + 1.0]]
    )
    shape.poly(rect, pick(rng, PALETTE.terrain, 10.0), TERRAIN)
    for side in street.sides:
        _side_ops(shape, rng, cam, side, z0, z1)
    road = pick(rng, PALETTE.road, 5.0)
    shape.poly(strip(cam, street.road_left, street.road_right, 0.0, z0, z1, 28), road, ROAD)
    if rng.random() < 0.35:
        # a patch of darker repaired asphalt
        x = float(rng.uniform(street.road_left, street.road_right - 1.0))
        za = float(rng.uniform(z0 + 1.0, 30.0))
        shape.poly(
            strip(cam, x, x + float(rng.uniform(0.8, 3.0)), 0.0, za, za + float(rng.uniform(2, 12)), 6),
            scaled(road, 0.8),
            ROAD,
        )
    _marking_ops(shape, rng, cam, street, z0)
    return shape.ops
