"""What lines the street behind the sidewalks: skyline, building facades, fences, walls and hedges."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import Camera, depth_samples
from .canvas import Op, Shadow, Shape, fixed
from .classes import BUILDING, FENCE, VEGETATION, WALL
from .ground import vertical_strip
from .palette import PALETTE, RGB, mix, pick, scaled
from .config import PopulationConfig
from .street import SIDEWALK_HEIGHT, Side

MIN_WINDOW_PX = 1.2


@dataclass(frozen=True)
class Building:
    """A block whose facade runs along the street at lateral ``x`` from depth ``z0`` to ``z1``."""

    x: float
    sign: int
    z0: float
    z1: float
    height: float
    row: int = 1
    """0 for buildings set back behind the building line (drawn first), 1 on the line."""


def skyline_ops(rng: np.random.Generator, cam: Camera) -> list[Op]:
    """Distant buildings and tree lines on the horizon."""
    shape = Shape()
    unit = cam.height / 256.0
    base = cam.horizon + 4.0 * unit
    x = float(rng.uniform(-20, 0))
    while x < cam.width:
        w = float(rng.uniform(8, 60)) * unit
        if rng.random() < 0.35:
            r = w / 2
            shape.ellipse(
                (x + r, base - r * 0.3), (r, r * rng.uniform(0.4, 0.9)), pick(rng, PALETTE.vegetation, 8), VEGETATION
            )
        elif rng.random() < 0.75:
            h = float(rng.uniform(4, 32)) * unit
            rect = np.array([[x, base], [x + w, base], [x + w, base - h], [x, base - h]])
            shape.poly(rect, pick(rng, PALETTE.skyline, 8), BUILDING)
        x += w * float(rng.uniform(0.5, 1.1))
    return shape.ops


def _windows(shape: Shape, rng: np.random.Generator, cam: Camera, b: Building, glass: RGB, frame: RGB | None) -> None:
    """A grid of windows on the facade; windows below a pixel or two are left out."""
    ground_floor = float(rng.uniform(3.2, 4.5))
    floor = float(rng.uniform(2.8, 3.4))
    win_h = float(rng.uniform(1.1, 1.8))
    win_w = float(rng.uniform(0.9, 1.8))
    pitch = float(rng.uniform(win_w + 0.8, win_w + 2.4))
    rows = ground_floor + floor * np.arange(int(max(0.0, b.height - ground_floor - 0.8) // floor)) + (floor - win_h) / 2
    cols = np.arange(b.z0 + rng.uniform(0.4, pitch), b.z1 - win_w - 0.2, pitch)
    if rows.size == 0 or cols.size == 0:
        return
    zc, yc = np.meshgrid(cols, rows, indexing="ij")
    pad = 0.12 if frame is not None else 0.0
    z = np.stack([zc - pad, zc + win_w + pad, zc + win_w + pad, zc - pad], axis=-1)
    y = np.stack([yc - pad, yc - pad, yc + win_h + pad, yc + win_h + pad], axis=-1)
    pts = cam.project(b.x, y, z)
    width = np.abs(pts[..., 1, 0] - pts[..., 0, 0])
    height = np.abs(pts[..., 2, 1] - pts[..., 1, 1])
    keep = (width >= MIN_WINDOW_PX) & (height >= 1.5 * MIN_WINDOW_PX)
    if not keep.any():
        return
    if frame is not None:
        shape.poly(pts[keep], frame, BUILDING)
        z = np.stack([zc, zc + win_w, zc + win_w, zc], axis=-1)
        y = np.stack([yc, yc, yc + win_h, yc + win_h], axis=-1)
        pts = cam.project(b.x, y, z)
    shape.poly(pts[keep], glass, BUILDING)


def in_view(cam: Camera, pts: np.ndarray, min_extent: float = 1.0) -> bool:
    """Whether points (..., 2) span a box of at least ``min_extent`` px that meets the image."""
    pts = pts.reshape(-1, 2)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    if hi[0] < 0 or hi[1] < 0 or lo[0] >= cam.width or lo[1] >= cam.height:
        return False
    return bool((hi - lo).max() >= min_extent)


def building_ops(rng: np.random.Generator, cam: Camera, b: Building) -> list[Op]:
    """End wall, facade, cornice, floor bands, windows and an optional shop front of one building."""
    shape = Shape()
    corners = cam.project(b.x, np.array([0.0, b.height, 0.0, b.height]), np.array([b.z0, b.z0, b.z1, b.z1]))
    if not in_view(cam, corners, 2.0):
        return shape.ops
    wall = pick(rng, PALETTE.building, 10.0)
    depth = float(rng.uniform(8, 20))
    end = cam.project(
        np.array([b.x, b.x + b.sign * depth, b.x + b.sign * depth, b.x]), np.array([0.0, 0.0, b.height, b.height]), b.z0
    )
    shape.poly(end, scaled(wall, 0.72), BUILDING)
    shape.poly(vertical_strip(cam, b.x, 0.0, b.height, b.z0, b.z1, 8), wall, BUILDING)
    shape.poly(vertical_strip(cam, b.x, b.height - 0.5, b.height, b.z0, b.z1, 8), scaled(wall, 0.8), BUILDING)
    if rng.random() < 0.5:
        band = scaled(wall, float(rng.uniform(0.8, 0.92)))
        ys = np.arange(3.0, b.height - 1.0, 3.1)[:8, None]
        if ys.size:
            shape.lines(cam.project(b.x, ys, depth_samples(b.z0, b.z1, 6)[None, :]), band, BUILDING, 1)
    glass = pick(rng, PALETTE.glass, 10.0)
    frame = pick(rng, PALETTE.frame, 8.0) if rng.random() < 0.5 else None
    _windows(shape, rng, cam, b, glass, frame)
    if rng.random() < 0.45:
        shop = mix(glass, (20.0, 20.0, 25.0), 0.4)
        za, zb = b.z0 + 0.8, b.z1 - 0.8
        if zb > za:
            shape.poly(vertical_strip(cam, b.x, 0.3, float(rng.uniform(2.4, 3.2)), za, zb, 6), shop, BUILDING)
    return shape.ops


def cross_facade_ops(rng: np.random.Generator, cam: Camera, depth: float) -> list[Op]:
    """A building facing the camera that closes the street far ahead."""
    shape = Shape()
    height = float(rng.uniform(10, 28))
    x0, x1 = -80.0, 80.0
    wall = pick(rng, PALETTE.building, 10.0)
    pts = cam.project(np.array([x0, x1, x1, x0]), np.array([0.0, 0.0, height, height]), depth)
    shape.poly(pts, wall, BUILDING)
    pitch, win_w, win_h = float(rng.uniform(2.5, 4.0)), float(rng.uniform(1.0, 1.6)), float(rng.uniform(1.2, 1.7))
    xs = np.arange(x0 + 1.0, x1 - 1.0, pitch)
    ys = np.arange(4.0, height - 2.0, 3.1)
    if xs.size and ys.size:
        xg, yg = np.meshgrid(xs, ys)
        x = np.stack([xg, xg + win_w, xg + win_w, xg], axis=-1)
        y = np.stack([yg, yg, yg + win_h, yg + win_h], axis=-1)
        shape.poly(cam.project(x, y, depth).reshape(-1, 4, 2), pick(rng, PALETTE.glass, 10.0), BUILDING)
    return shape.ops


def plan_buildings(rng: np.random.Generator, side: Side, z_end: float) -> list[Building]:
    """Buildings along one urban side: a row on the building line and maybe a taller row behind it."""
    buildings: list[Building] = []
    if rng.random() < 0.5:
        z = float(rng.uniform(5, 20))
        while z < z_end:
            length = float(rng.uniform(15, 40))
            x = side.x(side.frontage + float(rng.uniform(8, 25)))
            buildings.append(Building(x, side.sign, z, min(z + length, z_end), float(rng.uniform(14, 40)), row=0))
            z += length
    z = 1.0
    while z < z_end:
        if z > 6 and rng.random() < 0.22:
            gap = float(rng.uniform(4, 14))
            if rng.random() < 0.6:
                x = side.x(side.frontage + float(rng.uniform(6, 20)))
                buildings.append(Building(x, side.sign, z, z + gap, float(rng.uniform(6, 25)), row=0))
            z += gap
            continue
        length = float(rng.uniform(8, 30))
        x = side.x(side.frontage + float(rng.uniform(0.0, 1.0)))
        buildings.append(Building(x, side.sign, z, min(z + length, z_end), float(rng.uniform(6, 26))))
        z += length
    return buildings


def distant_buildings(rng: np.random.Generator, side: Side, z_end: float) -> list[Building]:
    """A few set-back buildings seen across open land on a green side."""
    out = []
    for _ in range(int(rng.integers(0, 4))):
        z = float(rng.uniform(15, z_end))
        x = side.x(side.frontage + float(rng.uniform(20, 70)))
        out.append(Building(x, side.sign, z, z + float(rng.uniform(10, 40)), float(rng.uniform(5, 25)), row=0))
    return out


def building_shadows(rng: np.random.Generator, cam: Camera, buildings: list[Building], strength: float) -> list[Shadow]:
    """Shadows of buildings cast across the ground by a low sun on their side of the street."""
    reach, drift = float(rng.uniform(0.4, 1.1)), float(rng.uniform(-0.6, 0.6))
    polys = []
    for b in buildings:
        length = b.height * reach
        x_in = b.x - b.sign * length
        pts = cam.project(
            np.array([b.x, b.x, x_in, x_in]), 0.0, np.array([b.z0, b.z1, b.z1 + drift * length, b.z0 + drift * length])
        )
        polys.append(fixed(pts))
    return [Shadow(polys, strength)] if polys else []


def fence_ops(rng: np.random.Generator, cam: Camera, side: Side, z0: float, z1: float) -> list[Op]:
    """A railing fence: posts, two rails and pickets where they are far enough apart to be seen."""
    shape = Shape()
    x = side.x(side.sidewalk_end)
    h = float(rng.uniform(0.9, 2.0))
    paint = pick(rng, PALETTE.fence, 10.0)
    base = SIDEWALK_HEIGHT
    pitch = float(rng.uniform(0.12, 0.3))
    zs = np.arange(z0, z1, pitch)
    bottom = cam.project(x, base, zs)
    top = cam.project(x, base + h, zs)
    gaps = np.abs(np.diff(bottom[:, 0], append=bottom[-1:, 0] - 10.0))
    visible = gaps >= 2.5
    if visible.any():
        shape.lines(np.stack([bottom[visible], top[visible]], axis=1), paint, FENCE, 1)
    if (~visible).any():
        zf = float(zs[np.argmin(visible)]) if not visible.all() else z1
        if zf < z1:
            shape.poly(vertical_strip(cam, x, base, base + h, zf, z1, 8), scaled(paint, 0.9), FENCE)
    for y in (base + 0.1, base + h):
        shape.lines(cam.project(x, y, depth_samples(z0, z1, 12)), scaled(paint, 0.85), FENCE, 2)
    posts = np.arange(z0, z1, float(rng.uniform(2.0, 3.0)))
    for z in posts[:12]:
        w = max(1.0, 0.08 * cam.scale(z))
        a, b = cam.point(x, base, z), cam.point(x, base + h + 0.1, z)
        shape.poly(
            np.array([[a[0] - w / 2, a[1]], [a[0] + w / 2, a[1]], [b[0] + w / 2, b[1]], [b[0] - w / 2, b[1]]]),
            scaled(paint, 0.7),
            FENCE,
        )
    return shape.ops


def wall_ops(rng: np.random.Generator, cam: Camera, side: Side, z0: float, z1: float) -> list[Op]:
    """A solid garden or retaining wall with a coping on top."""
    shape = Shape()
    x = side.x(side.sidewalk_end)
    h = float(rng.uniform(0.7, 2.6))
    stone = pick(rng, PALETTE.wall, 10.0)
    base = SIDEWALK_HEIGHT
    end = cam.project(
        np.array([x, x + side.sign * 0.3, x + side.sign * 0.3, x]), np.array([base, base, base + h, base + h]), z0
    )
    shape.poly(end, scaled(stone, 0.75), WALL)
    shape.poly(vertical_strip(cam, x, base, base + h, z0, z1, 10), stone, WALL)
    shape.poly(vertical_strip(cam, x, base + h - 0.12, base + h, z0, z1, 10), scaled(stone, 1.15), WALL)
    return shape.ops


def hedge_ops(rng: np.random.Generator, cam: Camera, side: Side, z0: float, z1: float) -> list[Op]:
    """A hedge with a ragged top."""
    shape = Shape()
    x = side.x(side.sidewalk_end + 0.3)
    h = float(rng.uniform(0.6, 2.2))
    zs = depth_samples(z0, z1, 40)
    base_y = SIDEWALK_HEIGHT
    tops = base_y + h * (1.0 + 0.12 * rng.standard_normal(zs.size))
    pts = np.concatenate([cam.project(x, base_y, zs), cam.project(x, tops[::-1], zs[::-1])])
    shape.poly(pts, pick(rng, PALETTE.vegetation, 8.0), VEGETATION)
    return shape.ops


def side_barrier_ops(
    rng: np.random.Generator, cam: Camera, side: Side, population: PopulationConfig, z_far: float
) -> list[Op]:
    """At most one of fence, wall or hedge along the outer edge of a sidewalk segment."""
    u = rng.random()
    z0 = float(rng.uniform(0.6 * cam.nearest_visible_depth, 25.0))
    z1 = min(z_far, z0 + float(rng.uniform(10.0, 80.0)))
    if z1 <= z0:
        return []
    p = population
    if u < p.fence_prob:
        return fence_ops(rng, cam, side, z0, z1)
    if u < p.fence_prob + p.wall_prob:
        return wall_ops(rng, cam, side, z0, z1)
    if u < p.fence_prob + p.wall_prob + p.hedge_prob:
        return hedge_ops(rng, cam, side, z0, z1)
    return []
