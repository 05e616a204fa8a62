"""Pedestrians, cyclists and motorcyclists, bicycles and motorcycles."""

from __future__ import annotations

import numpy as np

from .camera import Billboard, Camera
from .canvas import Shape
from .classes import BICYCLE, MOTORCYCLE, PERSON, RIDER
from .palette import PALETTE, RGB, pick, scaled
from .vehicles import HUB, TYRE


def _limb(a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    """Quad of a limb of ``width`` pixels from point ``a`` to ``b``."""
    d = b - a
    n = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6) * (width / 2)
    return np.array([a + n, b + n, b - n, a - n])


def person_ops(
    rng: np.random.Generator, cam: Camera, x: float, z: float, base_y: float = 0.0, label: int = PERSON
) -> Shape:
    """A standing or walking person (a child now and then) seen from front, back or side."""
    shape = Shape()
    child = rng.random() < 0.12
    h = float(rng.uniform(1.0, 1.4) if child else rng.uniform(1.55, 1.95))
    bb = Billboard(cam, x, z, base_y, mirror=bool(rng.random() < 0.5))
    profile = rng.random() < 0.4
    half = 0.085 if profile else 0.115
    skin = pick(rng, PALETTE.skin, 6.0)
    top = pick(rng, PALETTE.clothes, 12.0)
    legs = pick(rng, PALETTE.trousers, 8.0)
    stride = float(rng.uniform(0.0, 0.22 if profile else 0.08))
    hip, shoulder = 0.5 * h, 0.8 * h
    leg_w = 0.12 * h / 1.75 * bb.s
    for sgn in (-1.0, 1.0):
        foot = np.array([sgn * (stride if profile else 0.06 + stride), 0.0])
        hip_pt = np.array([sgn * (0.02 if profile else 0.075), hip])
        shape.poly(_limb(bb(hip_pt), bb(foot), max(leg_w, 1.0)), scaled(legs, 0.9 if sgn < 0 else 1.0), label)
        shape.poly(
            _limb(bb(foot), bb(foot + [0.1 * bb.m if profile else 0.0, 0.0]), max(0.05 * bb.s, 1.0)),
            (30.0, 28.0, 26.0),
            label,
        )
    coat = rng.random() < 0.25
    low = hip - (0.18 * h if coat else 0.0)
    shape.poly(
        bb(np.array([[-half * 2, shoulder], [half * 2, shoulder], [half * 1.6, low], [-half * 1.6, low]])), top, label
    )
    arm_w = max(0.08 * h / 1.75 * bb.s, 1.0)
    for sgn in (-1.0, 1.0):
        swing = float(rng.uniform(-0.12, 0.12)) if profile else 0.0
        sh = np.array([sgn * half * (1.2 if profile else 2.0), shoulder - 0.02])
        hand = np.array([sh[0] + swing + (0.0 if profile else sgn * 0.04), hip - 0.02])
        shape.poly(_limb(bb(sh), bb(hand), arm_w), scaled(top, 0.85), label)
        c = bb(hand)
        shape.ellipse(c, (0.035 * bb.s, 0.04 * bb.s), skin, label)
    if rng.random() < 0.3:
        bag = pick(rng, PALETTE.clothes, 10.0)
        side = -1.0 if profile else 1.0
        u0, u1 = side * half * 2.2, side * half * 3.2
        shape.poly(bb(np.array([[u0, 0.75 * h], [u1, 0.75 * h], [u1, 0.55 * h], [u0, 0.55 * h]])), bag, label)
    neck = bb(np.array([0.0, shoulder + 0.02]))
    head = bb(np.array([0.0, 0.92 * h]))
    r = 0.065 * h * bb.s
    shape.ellipse(neck, (0.03 * bb.s, 0.05 * bb.s), skin, label)
    shape.ellipse(head, (r * 0.85, r), skin, label)
    shape.ellipse(head, (r * 0.9, r * 1.05), pick(rng, PALETTE.hair, 8.0), label, start=180.0, end=360.0)
    return shape


def _bike_frame(
    cam: Camera, x: float, z: float, heading: np.ndarray, points: np.ndarray, base_y: float = 0.0
) -> np.ndarray:
    """Project bike-local points (a along the heading, v up) placed at ground point (x, z)."""
    return cam.project(x + points[..., 0] * heading[0], points[..., 1] + base_y, z + points[..., 0] * heading[1])


def _wheel(
    shape: Shape,
    cam: Camera,
    x: float,
    z: float,
    heading: np.ndarray,
    a: float,
    r: float,
    rim: RGB,
    label: int,
    solid: bool,
    base_y: float = 0.0,
) -> None:
    c = _bike_frame(cam, x, z, heading, np.array([a, r]), base_y)
    e = _bike_frame(cam, x, z, heading, np.array([a + r, r]), base_y)
    zc = z + a * heading[1]
    ry = r * cam.scale(zc)
    rx = max(abs(e[0] - c[0]), 0.5)
    if solid:
        shape.ellipse(c, (rx, ry), TYRE, label)
        shape.ellipse(c, (rx * 0.45, ry * 0.45), HUB, label)
    else:
        thick = max(1, int(round(0.05 * cam.scale(zc))))
        shape.ellipse(c, (rx, ry), rim, label, thickness=thick)


def _rider(
    shape: Shape,
    rng: np.random.Generator,
    cam: Camera,
    seat: np.ndarray,
    bars: np.ndarray,
    pedal: np.ndarray,
    s: float,
    helmet: bool,
) -> None:
    """A person sitting on the saddle, hands on the bars, feet on the pedals (label rider)."""
    top = pick(rng, PALETTE.clothes, 12.0)
    legs = pick(rng, PALETTE.trousers, 8.0)
    skin = pick(rng, PALETTE.skin, 6.0)
    up = np.array([0.0, -1.0])
    lean = bars - seat
    lean = lean / max(float(np.hypot(*lean)), 1e-6)
    shoulder = seat + up * 0.55 * s + lean * 0.18 * s
    knee = 0.5 * (seat + pedal) + lean * 0.18 * s
    shape.poly(_limb(seat, knee, max(0.13 * s, 1.0)), legs, RIDER)
    shape.poly(_limb(knee, pedal, max(0.11 * s, 1.0)), scaled(legs, 0.9), RIDER)
    shape.poly(_limb(seat, shoulder, max(0.36 * s, 1.0)), top, RIDER)
    shape.poly(_limb(shoulder, bars, max(0.08 * s, 1.0)), scaled(top, 0.85), RIDER)
    head = shoulder + up * 0.17 * s + lean * 0.04 * s
    r = 0.12 * s
    shape.ellipse(head, (r * 0.85, r), skin, RIDER)
    cap = pick(rng, PALETTE.bike, 10.0) if helmet else pick(rng, PALETTE.hair, 8.0)
    shape.ellipse(
        head, (r * (1.05 if helmet else 0.9), r * (1.1 if helmet else 1.05)), cap, RIDER, start=180.0, end=360.0
    )
    if helmet:
        shape.ellipse(head, (r * 1.0, r * 1.05), cap, RIDER, start=-20.0, end=200.0)


def bicycle_ops(
    rng: np.random.Generator, cam: Camera, x: float, z: float, heading: np.ndarray, ridden: bool, base_y: float = 0.0
) -> Shape:
    """A bicycle (side view when crossing, narrow when riding along); optionally with its rider."""
    shape = Shape()
    paint = pick(rng, PALETTE.bike, 10.0)
    r = 0.34
    pts = np.array(
        [[-0.53, r], [-0.12, 0.86], [0.0, 0.3], [0.42, 0.84], [0.53, r], [0.38, 1.0], [-0.17, 0.92], [-0.02, 0.92]]
    )
    p = _bike_frame(cam, x, z, heading, pts, base_y)
    s = cam.scale(z)
    thick = max(1, int(round(0.045 * s)))
    for a in (-0.53, 0.53):
        _wheel(shape, cam, x, z, heading, a, r, (25.0, 25.0, 25.0), BICYCLE, solid=False, base_y=base_y)
    shape.lines(p[[0, 1, 2, 0]], paint, BICYCLE, thick)
    shape.lines(p[[1, 3, 2]], paint, BICYCLE, thick)
    shape.lines(p[[4, 3, 5]], paint, BICYCLE, thick)
    shape.lines(p[[6, 7]], (25.0, 25.0, 25.0), BICYCLE, max(thick, 2))
    if ridden:
        _rider(shape, rng, cam, p[6], p[5], p[2], s, helmet=bool(rng.random() < 0.4))
    return shape


def motorcycle_ops(
    rng: np.random.Generator, cam: Camera, x: float, z: float, heading: np.ndarray, ridden: bool
) -> Shape:
    """A motorcycle or scooter with an optional helmeted rider."""
    shape = Shape()
    paint = pick(rng, PALETTE.car, 12.0)
    r = 0.31
    for a in (-0.7, 0.7):
        _wheel(shape, cam, x, z, heading, a, r, TYRE, MOTORCYCLE, solid=True)
    hull = np.array(
        [[-0.75, 0.5], [-0.85, 0.8], [-0.15, 0.82], [0.25, 1.0], [0.55, 0.92], [0.45, 0.45], [0.0, 0.28], [-0.45, 0.35]]
    )
    p = _bike_frame(cam, x, z, heading, hull)
    shape.poly(p, paint, MOTORCYCLE)
    engine = _bike_frame(cam, x, z, heading, np.array([[-0.25, 0.3], [0.25, 0.3], [0.3, 0.6], [-0.2, 0.62]]))
    shape.poly(engine, (70.0, 70.0, 72.0), MOTORCYCLE)
    fork = _bike_frame(cam, x, z, heading, np.array([[0.7, r], [0.48, 1.1]]))
    s = cam.scale(z)
    shape.lines(fork, (50.0, 50.0, 55.0), MOTORCYCLE, max(1, int(round(0.06 * s))))
    tail = _bike_frame(cam, x, z, heading, np.array([-0.85, 0.78]))
    shape.ellipse(tail, (max(0.05 * s, 0.6), max(0.04 * s, 0.6)), (200.0, 30.0, 30.0), MOTORCYCLE)
    if ridden:
        seat = _bike_frame(cam, x, z, heading, np.array([-0.35, 0.85]))
        bars = _bike_frame(cam, x, z, heading, np.array([0.45, 1.12]))
        peg = _bike_frame(cam, x, z, heading, np.array([-0.05, 0.35]))
        _rider(shape, rng, cam, seat, bars, peg, s, helmet=True)
    return shape
