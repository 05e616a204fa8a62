"""Shapes of the test anomalies; none of them is ever drawn in an inlier scene.

Large anomalies (``SynthAnomaly``): animal-like quadrupeds, debris piles, blob creatures.
Small obstacles (``SynthObstacle``): boxes and crates, tyres, rocks, odd small blobs, cones.
All are painted with the internal anomaly label and scaled by perspective at their ground point.
"""

from __future__ import annotations

import numpy as np

from .camera import Billboard, Camera
from .canvas import ANOMALY_LABEL, Shape
from .palette import RGB, mix, pick, scaled
from .vehicles import Box, solid_box

A = ANOMALY_LABEL

ODD: tuple[RGB, ...] = (
    (150, 60, 200), (235, 120, 30), (40, 180, 170), (225, 90, 160), (240, 230, 60), (25, 25, 25),
    (245, 245, 240), (120, 75, 40), (90, 200, 60), (200, 40, 40), (60, 90, 220), (170, 150, 120),
)
EARTHY: tuple[RGB, ...] = ((110, 85, 60), (140, 130, 115), (90, 90, 88), (160, 120, 70), (70, 60, 50), (180, 170, 150))
CARDBOARD: tuple[RGB, ...] = ((185, 145, 95), (160, 120, 75), (200, 170, 120))
CRATE: tuple[RGB, ...] = ((40, 90, 170), (200, 50, 40), (40, 150, 70), (230, 200, 40), (150, 110, 70))


def radial_blob(rng: np.random.Generator, n: int = 20, roughness: float = 0.25) -> np.ndarray:
    """Unit-size closed outline (n, 2) with smooth random radius."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1.0 + sum(roughness / k * rng.normal() * np.cos(k * t + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    return np.stack([np.cos(t) * r, np.sin(t) * r], axis=-1)


def _limb(a: np.ndarray, b: np.ndarray, wa: float, wb: float) -> np.ndarray:
    """Tapered quad from ``a`` (width ``wa``) to ``b`` (width ``wb``), local coordinates."""
    d = b - a
    n = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-9)
    return np.array([a + n * wa / 2, b + n * wb / 2, b - n * wb / 2, a - n * wa / 2])


def _pattern(
    shape: Shape, rng: np.random.Generator, bb: Billboard, cu: float, cv: float, ru: float, rv: float, rgb: RGB
) -> None:
    """Spots or stripes inside the ellipse centred (cu, cv) with radii (ru, rv)."""
    kind = int(rng.integers(3))
    if kind == 0:
        for _ in range(int(rng.integers(3, 9))):
            t, rr = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 0.6))
            c = bb(np.array([cu + rr * ru * np.cos(t), cv + rr * rv * np.sin(t)]))
            size = float(rng.uniform(0.12, 0.3)) * min(ru, rv) * bb.s
            shape.ellipse(c, (size * 1.3, size), rgb, A, angle=float(rng.uniform(0, 180)))
    elif kind == 1:
        us = np.linspace(-0.8, 0.8, int(rng.integers(4, 9)))
        half = np.sqrt(1 - us**2) * rv * 0.95
        top = np.stack([cu + us * ru, cv + half], axis=-1)
        bottom = np.stack([cu + us * ru + 0.1 * ru, cv - half], axis=-1)
        width = max(1, int(round(0.08 * ru * bb.s)))
        shape.lines(np.stack([bb(top), bb(bottom)], axis=1), rgb, A, width)


def quadruped(rng: np.random.Generator, cam: Camera, x: float, z: float, base_y: float) -> Shape:
    """An animal-like silhouette: body, four legs, neck, head with ears or horns, tail; odd colours."""
    shape = Shape()
    bb = Billboard(cam, x, z, base_y, mirror=bool(rng.random() < 0.5))
    k = float(rng.uniform(0.6, 1.6))
    squash = float(rng.uniform(0.45, 1.0))  # foreshortening when not seen exactly side-on
    leg, length, height = 0.75 * k * rng.uniform(0.7, 1.3), 1.4 * k * squash, 0.7 * k * rng.uniform(0.8, 1.2)
    fur = pick(rng, ODD, 14.0)
    dark = scaled(fur, 0.7)
    cy = leg + height / 2
    for sgn, offset in ((-1, -0.07), (-1, 0.07), (1, -0.07), (1, 0.07)):
        top = np.array([sgn * 0.36 * length + offset * k, cy])
        foot = top + np.array([rng.uniform(-0.2, 0.2) * k, -cy])
        shape.poly(bb(_limb(top, foot, 0.17 * k, 0.1 * k)), dark if offset < 0 else fur, A)
    tail_a = np.array([-0.5 * length, cy + 0.3 * height])
    shape.poly(bb(_limb(tail_a, tail_a + np.array([-0.25, -0.5]) * k, 0.08 * k, 0.04 * k)), dark, A)
    shape.ellipse(bb(np.array([0.0, cy])), (0.5 * length * bb.s, 0.5 * height * bb.s), fur, A)
    _pattern(shape, rng, bb, 0.0, cy, 0.5 * length, 0.5 * height, pick(rng, ODD, 14.0))
    neck_a = np.array([0.4 * length, cy + 0.2 * height])
    head = neck_a + np.array([0.25 * squash + 0.1, rng.uniform(0.25, 0.7)]) * k
    shape.poly(bb(_limb(neck_a, head, 0.3 * k, 0.16 * k)), fur, A)
    hu, hv = 0.26 * k, 0.14 * k
    shape.ellipse(
        bb(head + np.array([0.1 * k, -0.03 * k])),
        (hu * bb.s, hv * bb.s),
        fur,
        A,
        angle=float(-bb.m * rng.uniform(10, 35)),
    )
    if rng.random() < 0.5:
        for du in (-0.06, 0.06):
            base = head + np.array([du * k, 0.08 * k])
            ear = np.array([base + [-0.05 * k, 0], base + [0.05 * k, 0], base + [rng.uniform(-0.1, 0.1) * k, 0.2 * k]])
            shape.poly(bb(ear), dark, A)
    else:
        horn = head + np.array([0.0, 0.1 * k])
        pts = np.array([horn, horn + np.array([-0.15, 0.3]) * k, horn + np.array([-0.3, 0.35]) * k])
        shape.lines(bb(pts), (235.0, 225.0, 200.0), A, max(1, int(round(0.04 * k * bb.s))))
    eye = bb(head + np.array([0.18 * k, 0.02 * k]))
    shape.ellipse(eye, (max(0.03 * k * bb.s, 0.6),) * 2, (15.0, 15.0, 15.0), A)
    return shape


def debris_pile(rng: np.random.Generator, cam: Camera, x: float, z: float, base_y: float) -> Shape:
    """A heap of rocks, planks, sacks and a tarp."""
    shape = Shape()
    bb = Billboard(cam, x, z, base_y)
    width, height = float(rng.uniform(1.2, 4.0)), float(rng.uniform(0.5, 1.6))
    mound = np.stack([np.linspace(-width / 2, width / 2, 12), np.zeros(12)], axis=-1)
    mound[:, 1] = height * (1 - (2 * mound[:, 0] / width) ** 2) ** 0.7
    shape.poly(bb(np.concatenate([mound, [[width / 2, 0.0], [-width / 2, 0.0]]])), pick(rng, EARTHY, 12.0), A)
    n = int(rng.integers(8, 22))
    us = rng.uniform(-0.45, 0.45, n) * width
    vs = rng.uniform(0.0, 1.0, n) * height * (1 - (2 * us / width) ** 2).clip(0, 1)
    for i in np.argsort(-vs):
        c = np.array([us[i], vs[i]])
        u = rng.random()
        if u < 0.35:
            size = float(rng.uniform(0.15, 0.45))
            shape.poly(bb(c + radial_blob(rng, 9, 0.3) * [size, size * 0.7]), pick(rng, EARTHY, 15.0), A)
        elif u < 0.7:
            angle, length = rng.uniform(-0.6, 0.6), rng.uniform(0.6, 1.8)
            d = np.array([np.cos(angle), np.sin(angle)]) * length / 2
            shape.poly(
                bb(_limb(c - d, c + d, 0.12, 0.12)),
                pick(rng, ((150, 110, 70), (190, 160, 110), (100, 70, 45)), 12.0),
                A,
            )
        else:
            size = float(rng.uniform(0.2, 0.5))
            shape.poly(bb(c + radial_blob(rng, 14, 0.15) * [size, size * 0.6]), pick(rng, ODD, 15.0), A)
    return shape


def blob_creature(rng: np.random.Generator, cam: Camera, x: float, z: float, base_y: float) -> Shape:
    """A large irregular body with tentacle-like limbs and big eyes."""
    shape = Shape()
    bb = Billboard(cam, x, z, base_y, mirror=bool(rng.random() < 0.5))
    r = float(rng.uniform(0.6, 1.5))
    skin = pick(rng, ODD, 14.0)
    centre = np.array([0.0, r * 0.9])
    for _ in range(int(rng.integers(3, 7))):
        angle = rng.uniform(-np.pi * 0.95, -np.pi * 0.05) if rng.random() < 0.6 else rng.uniform(0, np.pi)
        tip = centre + np.array([np.cos(angle), np.sin(angle)]) * r * rng.uniform(1.3, 2.0)
        tip[1] = max(tip[1], 0.0)
        shape.poly(bb(_limb(centre, tip, 0.45 * r, 0.08 * r)), scaled(skin, 0.8), A)
    shape.poly(bb(centre + radial_blob(rng, 24, 0.3) * r), skin, A)
    _pattern(shape, rng, bb, 0.0, centre[1], 0.8 * r, 0.8 * r, pick(rng, ODD, 14.0))
    for du in (-0.3, 0.3):
        e = bb(centre + np.array([du * r, 0.35 * r]))
        shape.ellipse(e, (0.16 * r * bb.s,) * 2, (245.0, 245.0, 240.0), A)
        shape.ellipse(e, (0.07 * r * bb.s,) * 2, (10.0, 10.0, 10.0), A)
    return shape


LARGE_KINDS = (quadruped, quadruped, debris_pile, blob_creature)


def cargo_box(rng: np.random.Generator, cam: Camera, x: float, z: float, base_y: float) -> Shape:
    """A cardboard box or a plastic or wooden crate lying on the road."""
    shape = Shape()
    w, h, d = float(rng.uniform(0.25, 0.8)), float(rng.uniform(0.15, 0.55)), float(rng.uniform(0.25, 0.8))
    box = Box(x - w / 2, x + w / 2, base_y, base_y + h, z, z + d)
    cardboard = rng.random() < 0.55
    paint = pick(rng, CARDBOARD if cardboard else CRATE, 10.0)
    solid_box(shape, cam, box, paint, A)
    if cardboard:
        tape = cam.project(np.array([x, x]), base_y + h, np.array([z, z + d]))
        shape.lines(tape, mix(paint, (230.0, 220.0, 200.0), 0.6), A, max(1, int(round(0.05 * cam.scale(z)))))
    else:
        ys = base_y + h * np.array([0.33, 0.66])
        a = cam.project(x - w / 2, ys, z)
        b = cam.project(x + w / 2, ys, z)
        shape.lines(np.stack([a, b], axis=1), scaled(paint, 0.6), A, 1)
    return shape


def tyre(rng: np.random.Generator, cam: Camera, x: float, z: float, base_y: float) -> Shape:
    """A tyre lying flat (a dark ring, road visible through it) or standing on its tread."""
    shape = Shape()
    radius = float(rng.uniform(0.28, 0.42))
    rubber = pick(rng, ((28, 28, 30), (40, 38, 36)), 4.0)
    if rng.random() < 0.55:
        t = np.linspace(0, 2 * np.pi, 28, endpoint=False)
        h = 0.2
        ring = lambda r, y: cam.project(x + r * np.cos(t), y, z + radius + r * np.sin(t))  # noqa: E731
        front = t > np.pi
        side = np.concatenate([ring(radius, base_y)[front], ring(radius, base_y + h)[front][::-1]])
        shape.poly(side, scaled(rubber, 0.85), A)
        shape.poly(np.stack([ring(radius, base_y + h), ring(0.55 * radius, base_y + h)]), rubber, A)
    else:
        bb = Billboard(cam, x, z, base_y)
        c = bb(np.array([0.0, radius]))
        if rng.random() < 0.5:
            shape.ellipse(c, (radius * bb.s, radius * bb.s), rubber, A)
            shape.ellipse(c, (0.55 * radius * bb.s,) * 2, (150.0, 150.0, 155.0), A)
            shape.ellipse(c, (0.2 * radius * bb.s,) * 2, (90.0, 90.0, 95.0), A)
        else:
            shape.ellipse(c, (0.12 * bb.s, radius * bb.s), rubber, A)
    return shape


def rock(rng: np.random.Generator, cam: Camera, x: float, z: float, base_y: float) -> Shape:
    """One to three stones with a lit top."""
    shape = Shape()
    bb = Billboard(cam, x, z, base_y)
    stone = pick(rng, EARTHY, 15.0)
    for _ in range(int(rng.integers(1, 4))):
        w, h = float(rng.uniform(0.15, 0.5)), float(rng.uniform(0.1, 0.4))
        c = np.array([rng.uniform(-0.3, 0.3), h / 2])
        outline = c + radial_blob(rng, 9, 0.35) * [w / 2, h / 2]
        outline[:, 1] = np.maximum(outline[:, 1], 0.0)
        shape.poly(bb(outline), stone, A)
        top = outline[outline[:, 1] > c[1]]
        if len(top) >= 3:
            shape.poly(bb(top), scaled(stone, 1.2), A)
    return shape


def small_blob(rng: np.random.Generator, cam: Camera, x: float, z: float, base_y: float) -> Shape:
    """A small odd object (bag, toy, lump) in a saturated colour with spots or stripes."""
    shape = Shape()
    bb = Billboard(cam, x, z, base_y)
    w, h = float(rng.uniform(0.2, 0.6)), float(rng.uniform(0.12, 0.45))
    outline = np.array([0.0, h / 2]) + radial_blob(rng, 16, 0.3) * [w / 2, h / 2]
    outline[:, 1] = np.maximum(outline[:, 1], 0.0)
    shape.poly(bb(outline), pick(rng, ODD, 15.0), A)
    _pattern(shape, rng, bb, 0.0, h / 2, w / 2, h / 2, pick(rng, ODD, 15.0))
    return shape


def cone(rng: np.random.Generator, cam: Camera, x: float, z: float, base_y: float) -> Shape:
    """A traffic cone or a bucket: tapered body with bands."""
    shape = Shape()
    bb = Billboard(cam, x, z, base_y)
    h = float(rng.uniform(0.3, 0.7))
    body = pick(rng, ((240, 100, 20), (230, 200, 30), (60, 120, 220), (230, 230, 225)), 10.0)
    base_w, top_w = float(rng.uniform(0.25, 0.4)), float(rng.uniform(0.04, 0.25))
    foot = base_w / 2 + 0.05
    shape.poly(bb(np.array([[-foot, 0], [foot, 0], [foot, 0.04], [-foot, 0.04]])), scaled(body, 0.5), A)
    shape.poly(bb(np.array([[-base_w / 2, 0.04], [base_w / 2, 0.04], [top_w / 2, h], [-top_w / 2, h]])), body, A)
    for f in (0.45, 0.7):
        wa = base_w + (top_w - base_w) * f
        wb = base_w + (top_w - base_w) * (f + 0.1)
        band = np.array([[-wa / 2, f * h], [wa / 2, f * h], [wb / 2, (f + 0.1) * h], [-wb / 2, (f + 0.1) * h]])
        shape.poly(bb(band), (240.0, 240.0, 240.0), A)
    return shape


SMALL_KINDS = (cargo_box, tyre, rock, small_blob, cone)
