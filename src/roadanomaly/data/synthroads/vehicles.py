"""Cars, vans, trucks, buses and trams built from projected boxes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import Camera
from .canvas import Shadow, Shape, fixed
from .classes import BUS, CAR, TRAIN, TRUCK
from .ground import quads
from .palette import PALETTE, RGB, mix, pick, scaled

DARK: RGB = (22.0, 22.0, 24.0)
TYRE: RGB = (28.0, 28.0, 30.0)
HUB: RGB = (120.0, 120.0, 125.0)


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in the road frame."""

    x0: float
    x1: float
    y0: float
    y1: float
    z0: float
    z1: float

    def inset(self, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0) -> Box:
        return Box(self.x0 + dx, self.x1 - dx, self.y0 + dy, self.y1 - dy, self.z0 + dz, self.z1 - dz)


def _face(cam: Camera, xs: tuple, ys: tuple, zs: tuple) -> np.ndarray:
    return cam.project(np.array(xs), np.array(ys), np.array(zs))


def near_face(
    cam: Camera,
    b: Box,
    y0: float | None = None,
    y1: float | None = None,
    x0: float | None = None,
    x1: float | None = None,
) -> np.ndarray:
    """The face of ``b`` towards the camera, optionally restricted in height and width."""
    ya, yb = b.y0 if y0 is None else y0, b.y1 if y1 is None else y1
    xa, xb = b.x0 if x0 is None else x0, b.x1 if x1 is None else x1
    return _face(cam, (xa, xb, xb, xa), (ya, ya, yb, yb), (b.z0,) * 4)


def side_face(
    cam: Camera,
    b: Box,
    x: float,
    y0: float | None = None,
    y1: float | None = None,
    z0: float | None = None,
    z1: float | None = None,
) -> np.ndarray:
    """A face at lateral ``x`` spanning the box's depth, optionally restricted."""
    ya, yb = b.y0 if y0 is None else y0, b.y1 if y1 is None else y1
    za, zb = b.z0 if z0 is None else z0, b.z1 if z1 is None else z1
    return _face(cam, (x, x, x, x), (ya, ya, yb, yb), (za, zb, zb, za))


def top_face(cam: Camera, b: Box) -> np.ndarray:
    return _face(cam, (b.x0, b.x1, b.x1, b.x0), (b.y1,) * 4, (b.z0, b.z0, b.z1, b.z1))


def visible_side(cam: Camera, b: Box) -> float | None:
    """Lateral coordinate of the side face the camera sees, if any."""
    if b.x0 > 0.05:
        return b.x0
    if b.x1 < -0.05:
        return b.x1
    return None


def solid_box(shape: Shape, cam: Camera, b: Box, rgb: RGB, label: int) -> None:
    """Top, visible side and near face of a box with simple directional shading."""
    if b.y1 < cam.mount_height:
        shape.poly(top_face(cam, b), scaled(rgb, 1.08), label)
    side = visible_side(cam, b)
    if side is not None:
        shape.poly(side_face(cam, b, side), scaled(rgb, 0.78), label)
    shape.poly(near_face(cam, b), scaled(rgb, 0.93), label)


def tyres(shape: Shape, cam: Camera, b: Box, radius: float, label: int) -> None:
    """The two tyres seen below the near face."""
    w = 0.22 * min((b.x1 - b.x0) / 1.8, 1.4)
    for xa in (b.x0 + 0.05, b.x1 - 0.05 - w):
        shape.poly(near_face(cam, b, y0=0.0, y1=radius * 1.1, x0=xa, x1=xa + w), TYRE, label)


def side_wheels(shape: Shape, cam: Camera, b: Box, depths: list[float], radius: float, label: int) -> None:
    """Wheels with hubs on the side face the camera sees."""
    side = visible_side(cam, b)
    if side is None:
        return
    for z in depths:
        c = cam.point(side, radius, z)
        a = cam.point(side, radius, z - radius)
        rx = max(abs(a[0] - c[0]), 0.6)
        ry = radius * cam.scale(z)
        shape.ellipse(c, (rx, ry), TYRE, label)
        shape.ellipse(c, (rx * 0.55, ry * 0.55), HUB, label)


def footprint_shadow(cam: Camera, b: Box, strength: float = 0.45) -> Shadow:
    """Dark contact shadow under a vehicle."""
    pts = quads(cam, np.array(b.x0 - 0.15), np.array(b.x1 + 0.15), 0.0, np.array(b.z0 - 0.25), np.array(b.z1 + 0.2))
    return Shadow(fixed(pts.reshape(1, 4, 2)), strength)


def _lights(shape: Shape, cam: Camera, b: Box, facing: bool, y: float, label: int) -> None:
    """Head or tail lights and a number plate on the near face."""
    lamp = (235.0, 230.0, 200.0) if facing else (200.0, 25.0, 25.0)
    w = 0.2 + 0.05 * (b.x1 - b.x0)
    for xa in (b.x0 + 0.08, b.x1 - 0.08 - w):
        shape.poly(near_face(cam, b, y0=y, y1=y + 0.16, x0=xa, x1=xa + w), lamp, label)
    mid = 0.5 * (b.x0 + b.x1)
    shape.poly(near_face(cam, b, y0=y - 0.22, y1=y - 0.08, x0=mid - 0.26, x1=mid + 0.26), (225.0, 225.0, 220.0), label)


def car_ops(rng: np.random.Generator, cam: Camera, x: float, z: float, facing: bool) -> tuple[Shape, Shadow]:
    """A car or van centred at lateral ``x`` whose near end is at depth ``z``."""
    shape = Shape()
    van = rng.random() < 0.15
    width = float(rng.uniform(1.65, 1.95))
    length = float(rng.uniform(4.6, 5.4) if van else rng.uniform(3.7, 4.9))
    paint = pick(rng, PALETTE.car, 10.0)
    glass = mix(pick(rng, PALETTE.glass, 8.0), DARK, 0.4)
    body = Box(x - width / 2, x + width / 2, 0.28, float(rng.uniform(0.95, 1.1)), z, z + length)
    cabin_top = float(rng.uniform(1.85, 2.1) if van else rng.uniform(1.35, 1.6))
    a, c = (0.05, 0.92) if van else ((0.35, 0.8) if facing else (0.2, 0.65))
    cabin = Box(body.x0 + 0.08, body.x1 - 0.08, body.y1, cabin_top, z + a * length, z + c * length)
    shape.poly(near_face(cam, body, y0=0.0, y1=body.y0 + 0.02), DARK, CAR)
    tyres(shape, cam, body, 0.32, CAR)
    solid_box(shape, cam, body, paint, CAR)
    side_wheels(shape, cam, body, [z + 0.17 * length, z + 0.83 * length], 0.32, CAR)
    solid_box(shape, cam, cabin, paint, CAR)
    side = visible_side(cam, cabin)
    if side is not None:
        shape.poly(
            side_face(cam, cabin, side, y0=cabin.y0 + 0.06, y1=cabin.y1 - 0.07, z0=cabin.z0 + 0.15, z1=cabin.z1 - 0.1),
            glass,
            CAR,
        )
    window = cabin.inset(dx=0.1)
    shape.poly(near_face(cam, window, y0=cabin.y0 + 0.05, y1=cabin.y1 - 0.07), scaled(glass, 1.15), CAR)
    _lights(shape, cam, body, facing, body.y1 - 0.3, CAR)
    return shape, footprint_shadow(cam, body)


def truck_ops(rng: np.random.Generator, cam: Camera, x: float, z: float, facing: bool) -> tuple[Shape, Shadow]:
    """A lorry: cab plus cargo box; seen from behind the cargo box hides the cab."""
    shape = Shape()
    width = float(rng.uniform(2.3, 2.55))
    cab_len, cargo_len = float(rng.uniform(1.8, 2.4)), float(rng.uniform(4.5, 8.5))
    cab_paint = pick(rng, PALETTE.truck, 10.0)
    cargo_paint = pick(rng, PALETTE.truck, 10.0) if rng.random() < 0.6 else cab_paint
    x0, x1 = x - width / 2, x + width / 2
    total = cab_len + cargo_len + 0.3
    chassis = Box(x0 + 0.1, x1 - 0.1, 0.45, 1.05, z, z + total)
    cargo_z = z + cab_len + 0.3 if facing else z
    cab_z = z if facing else z + cargo_len + 0.3
    cargo = Box(x0, x1, 1.05, float(rng.uniform(3.2, 3.9)), cargo_z, cargo_z + cargo_len)
    cab = Box(x0 + 0.05, x1 - 0.05, 0.55, float(rng.uniform(2.7, 3.1)), cab_z, cab_z + cab_len)
    shape.poly(near_face(cam, chassis, y0=0.0, y1=1.05), DARK, TRUCK)
    tyres(shape, cam, chassis, 0.5, TRUCK)
    solid_box(shape, cam, chassis, DARK, TRUCK)
    side_wheels(shape, cam, chassis, [z + 0.15 * total, z + 0.7 * total, z + 0.85 * total], 0.5, TRUCK)
    for part, paint in sorted(((cargo, cargo_paint), (cab, cab_paint)), key=lambda bp: -bp[0].z0):
        solid_box(shape, cam, part, paint, TRUCK)
    if facing:
        shape.poly(near_face(cam, cab.inset(dx=0.15), y0=1.6, y1=cab.y1 - 0.2), mix(PALETTE.glass[0], DARK, 0.3), TRUCK)
        _lights(shape, cam, cab, True, 0.9, TRUCK)
    else:
        mid = 0.5 * (x0 + x1)
        shape.lines(near_face(cam, cargo, x0=mid, x1=mid)[[0, 3]], scaled(cargo_paint, 0.6), TRUCK, 1)
        _lights(shape, cam, chassis, False, 0.6, TRUCK)
    return shape, footprint_shadow(cam, Box(x0, x1, 0.0, 1.0, z, z + total))


def bus_ops(
    rng: np.random.Generator, cam: Camera, x: float, z: float, facing: bool, tram: bool = False
) -> tuple[Shape, Shadow]:
    """A city bus (or, with ``tram``, a tram labelled train) with a band of side windows."""
    shape = Shape()
    label = TRAIN if tram else BUS
    width = float(rng.uniform(2.35, 2.55))
    length = float(rng.uniform(18, 30) if tram else rng.uniform(10, 13))
    paint = pick(rng, PALETTE.tram if tram else PALETTE.bus, 10.0)
    glass = mix(pick(rng, PALETTE.glass, 8.0), DARK, 0.3)
    body = Box(x - width / 2, x + width / 2, 0.35, float(rng.uniform(3.0, 3.4)), z, z + length)
    shape.poly(near_face(cam, body, y0=0.0, y1=0.4), DARK, label)
    solid_box(shape, cam, body, paint, label)
    side = visible_side(cam, body)
    if side is not None:
        shape.poly(
            side_face(cam, body, side, y0=1.15, y1=body.y1 - 0.35, z0=z + 0.6, z1=z + length - 0.6), glass, label
        )
        pillars = np.arange(z + 2.0, z + length - 1.0, float(rng.uniform(1.4, 2.2)))
        if pillars.size:
            shape.lines(
                np.stack([cam.project(side, 1.15, pillars), cam.project(side, body.y1 - 0.35, pillars)], axis=1),
                paint,
                label,
                1,
            )
        side_wheels(shape, cam, body, [z + 2.5, z + length - 3.0], 0.45, label)
    shape.poly(near_face(cam, body.inset(dx=0.12), y0=1.2 if facing else 1.6, y1=body.y1 - 0.25), glass, label)
    _lights(shape, cam, body, facing, 0.75, label)
    if tram:
        roof = body.y1
        for dz in (0.3 * length, 0.6 * length):
            p = cam.project(np.array([x - 0.4, x, x + 0.4]), np.array([roof, roof + 1.3, roof]), z + dz)
            shape.lines(p, DARK, label, 1)
    return shape, footprint_shadow(cam, body)
