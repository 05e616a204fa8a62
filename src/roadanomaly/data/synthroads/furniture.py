"""Street furniture and greenery: poles, street lamps, traffic signs, traffic lights, trees, bushes."""

from __future__ import annotations

import numpy as np

from .camera import Billboard, Camera
from .canvas import Shape
from .classes import POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION
from .palette import PALETTE, RGB, pick, scaled

WHITE: RGB = (235.0, 235.0, 232.0)
RED: RGB = (200.0, 28.0, 30.0)
BLUE: RGB = (25.0, 75.0, 170.0)
YELLOW: RGB = (245.0, 200.0, 30.0)


def _rect(u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]])


def _regular(n: int, r: float, cu: float, cv: float, phase: float) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([cu + r * np.cos(t), cv + r * np.sin(t)], axis=-1)


def pole_shaft(shape: Shape, bb: Billboard, height: float, width: float, paint: RGB) -> None:
    """A vertical pole from the ground to ``height`` (at least one pixel wide)."""
    half = max(width * bb.s, 1.0) / 2 / bb.s
    shape.poly(bb(_rect(-half, half, 0.0, height)), paint, POLE)


def sign_plate(shape: Shape, rng: np.random.Generator, bb: Billboard, cu: float, cv: float, size: float) -> None:
    """One traffic sign face (or its grey back) centred at local (cu, cv)."""
    r = size / 2
    kind = int(rng.integers(6))
    if rng.random() < 0.15:
        shape.poly(bb(_regular(24 if kind < 3 else 4, r, cu, cv, np.pi / 4)), (150.0, 150.0, 152.0), TRAFFIC_SIGN)
        return
    if kind == 0:  # prohibition: white disc with red ring
        shape.poly(bb(_regular(24, r, cu, cv, 0.0)), RED, TRAFFIC_SIGN)
        shape.poly(bb(_regular(24, r * 0.75, cu, cv, 0.0)), WHITE, TRAFFIC_SIGN)
        shape.poly(
            bb(_rect(cu - r * 0.35, cu + r * 0.35, cv - r * 0.12, cv + r * 0.12)), (30.0, 30.0, 30.0), TRAFFIC_SIGN
        )
    elif kind == 1:  # mandatory: blue disc with white arrow
        shape.poly(bb(_regular(24, r, cu, cv, 0.0)), BLUE, TRAFFIC_SIGN)
        shape.poly(bb(np.array([[cu, cv + r * 0.6], [cu + r * 0.4, cv], [cu - r * 0.4, cv]])), WHITE, TRAFFIC_SIGN)
        shape.poly(bb(_rect(cu - r * 0.12, cu + r * 0.12, cv - r * 0.55, cv)), WHITE, TRAFFIC_SIGN)
    elif kind == 2:  # warning: red triangle, white inside
        shape.poly(bb(_regular(3, r * 1.15, cu, cv - r * 0.1, np.pi / 2)), RED, TRAFFIC_SIGN)
        shape.poly(bb(_regular(3, r * 0.75, cu, cv - r * 0.1, np.pi / 2)), WHITE, TRAFFIC_SIGN)
    elif kind == 3:  # priority road: yellow diamond
        shape.poly(bb(_regular(4, r, cu, cv, 0.0)), WHITE, TRAFFIC_SIGN)
        shape.poly(bb(_regular(4, r * 0.7, cu, cv, 0.0)), YELLOW, TRAFFIC_SIGN)
    elif kind == 4:  # stop
        shape.poly(bb(_regular(8, r, cu, cv, np.pi / 8)), RED, TRAFFIC_SIGN)
        shape.poly(bb(_rect(cu - r * 0.6, cu + r * 0.6, cv - r * 0.1, cv + r * 0.1)), WHITE, TRAFFIC_SIGN)
    else:  # information: blue or green rectangle
        ground = pick(rng, (BLUE, (30.0, 120.0, 60.0)), 8.0)
        shape.poly(bb(_rect(cu - r * 1.2, cu + r * 1.2, cv - r * 0.7, cv + r * 0.7)), ground, TRAFFIC_SIGN)
        shape.poly(bb(_rect(cu - r * 0.8, cu + r * 0.8, cv - r * 0.1, cv + r * 0.3)), WHITE, TRAFFIC_SIGN)


def traffic_light(shape: Shape, rng: np.random.Generator, bb: Billboard, cu: float, cv: float) -> None:
    """A three-lamp signal head; seen from behind it shows only its housing."""
    w, h = float(rng.uniform(0.28, 0.36)), float(rng.uniform(0.8, 1.0))
    housing = pick(rng, PALETTE.light_housing, 6.0)
    shape.poly(bb(_rect(cu - w / 2, cu + w / 2, cv - h / 2, cv + h / 2)), housing, TRAFFIC_LIGHT)
    if rng.random() < 0.25:
        return
    lit = int(rng.integers(3))
    colours = ((230.0, 40.0, 30.0), (250.0, 180.0, 20.0), (60.0, 230.0, 120.0))
    r = w * 0.32
    for k in range(3):
        c = bb(np.array([cu, cv + h / 3 * (1 - k)]))
        rgb = colours[k] if k == lit else scaled(colours[k], 0.25)
        shape.ellipse(c, (r * bb.s, r * bb.s), rgb, TRAFFIC_LIGHT)


def pole_ops(
    rng: np.random.Generator,
    cam: Camera,
    x: float,
    z: float,
    base_y: float,
    road_sign: int,
    sign_prob: float,
    light_prob: float,
    overhead_prob: float,
) -> Shape:
    """A pole carrying a sign, a traffic light, an overhead arm with a light, or a street lamp.

    ``road_sign`` is the direction from the pole towards the road (+1 right, -1 left).
    """
    shape = Shape()
    bb = Billboard(cam, x, z, base_y)
    paint = pick(rng, PALETTE.pole, 8.0)
    u = rng.random()
    if u < light_prob:
        overhead = rng.random() < overhead_prob
        height = float(rng.uniform(5.0, 6.5) if overhead else rng.uniform(2.8, 3.8))
        pole_shaft(shape, bb, height, 0.16, paint)
        if overhead:
            reach = road_sign * float(rng.uniform(3.0, 6.0))
            arm = bb(np.array([[0.0, height - 0.2], [reach, height - 0.2]]))
            shape.lines(arm, paint, POLE, max(1, int(round(0.12 * bb.s))))
            traffic_light(shape, rng, bb, reach, height - 0.8)
        traffic_light(shape, rng, bb, road_sign * 0.25, float(rng.uniform(2.2, min(height, 3.2))))
    elif u < light_prob + sign_prob:
        height = float(rng.uniform(2.6, 3.6))
        pole_shaft(shape, bb, height, 0.08, paint)
        size = float(rng.uniform(0.55, 0.85))
        sign_plate(shape, rng, bb, 0.0, height - size / 2, size)
        if rng.random() < 0.3:
            sign_plate(shape, rng, bb, 0.0, height - size * 1.55, size * 0.8)
    else:
        height = float(rng.uniform(6.0, 9.0))
        pole_shaft(shape, bb, height, float(rng.uniform(0.14, 0.24)), paint)
        reach = road_sign * float(rng.uniform(0.8, 2.0))
        arm = bb(np.array([[0.0, height - 0.6], [reach * 0.5, height], [reach, height - 0.1]]))
        shape.lines(arm, paint, POLE, max(1, int(round(0.09 * bb.s))))
        head = bb(np.array([reach, height - 0.15]))
        shape.ellipse(head, (0.3 * bb.s, 0.08 * bb.s), scaled(paint, 0.8), POLE)
    return shape


def tree_ops(rng: np.random.Generator, cam: Camera, x: float, z: float, base_y: float, scale: float = 1.0) -> Shape:
    """A tree: tapering trunk and a crown of overlapping leafy ellipses."""
    shape = Shape()
    bb = Billboard(cam, x, z, base_y, mirror=bool(rng.random() < 0.5))
    trunk_h = float(rng.uniform(1.8, 3.5)) * scale
    trunk_w = float(rng.uniform(0.22, 0.4)) * scale
    radius = float(rng.uniform(1.2, 2.7)) * scale
    reach = 2.5 * radius * bb.s
    if bb.x + reach < 0 or bb.x - reach > cam.width or bb.y < 0:
        return shape
    bark = pick(rng, PALETTE.trunk, 8.0)
    cy = trunk_h + radius * 0.8
    shape.poly(
        bb(np.array([[-trunk_w / 2, 0.0], [trunk_w / 2, 0.0], [trunk_w / 4, cy], [-trunk_w / 4, cy]])), bark, VEGETATION
    )
    leaf = pick(rng, PALETTE.vegetation, 10.0)
    n = int(rng.integers(5, 10))
    offsets = rng.normal(0.0, 0.45, size=(n, 2)) * radius
    sizes = rng.uniform(0.45, 0.8, size=n) * radius
    shades = rng.uniform(0.7, 1.25, size=n) * np.where(offsets[:, 1] < 0, 0.8, 1.0)
    angles = rng.uniform(0, 180, size=n)
    centres = bb(np.stack([offsets[:, 0], cy + offsets[:, 1] * 0.8], axis=-1))
    for k in np.argsort(offsets[:, 1]):
        r = sizes[k] * bb.s
        shape.ellipse(centres[k], (r, r * 0.85), scaled(leaf, shades[k]), VEGETATION, angle=angles[k])
    return shape


def bush_ops(rng: np.random.Generator, cam: Camera, x: float, z: float, base_y: float) -> Shape:
    """A low bush of a few overlapping blobs."""
    shape = Shape()
    bb = Billboard(cam, x, z, base_y)
    leaf = pick(rng, PALETTE.vegetation, 10.0)
    size = float(rng.uniform(0.5, 1.4))
    for _ in range(int(rng.integers(2, 5))):
        r = size * float(rng.uniform(0.5, 0.9))
        c = bb(np.array([rng.uniform(-size, size), r * 0.75]))
        shape.ellipse(c, (r * bb.s, r * 0.75 * bb.s), scaled(leaf, float(rng.uniform(0.75, 1.2))), VEGETATION)
    return shape
