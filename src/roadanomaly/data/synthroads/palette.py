"""Colour palettes for SynthRoads objects, sampled with per-object jitter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Palette:
    """Base colours per material; :func:`pick` adds jitter."""

    sky_zenith: tuple[RGB, ...] = ((70, 120, 200), (95, 145, 210), (150, 165, 180), (120, 130, 150), (90, 110, 160))
    sky_horizon: tuple[RGB, ...] = ((190, 210, 230), (210, 220, 228), (200, 200, 205), (235, 200, 160), (175, 185, 200))
    road: tuple[RGB, ...] = ((88, 88, 92), (105, 103, 106), (72, 72, 78), (120, 118, 115), (95, 92, 98))
    sidewalk: tuple[RGB, ...] = ((160, 155, 150), (178, 170, 160), (150, 135, 135), (185, 180, 178), (140, 140, 145))
    kerb: tuple[RGB, ...] = ((195, 192, 188), (170, 170, 172), (210, 205, 200))
    terrain: tuple[RGB, ...] = ((120, 140, 70), (145, 150, 85), (135, 120, 80), (110, 130, 65), (160, 150, 100))
    vegetation: tuple[RGB, ...] = ((55, 95, 40), (70, 110, 45), (45, 80, 35), (85, 115, 50), (60, 90, 55))
    trunk: tuple[RGB, ...] = ((70, 55, 40), (90, 75, 60), (60, 50, 45))
    building: tuple[RGB, ...] = (
        (200, 190, 170), (180, 170, 150), (150, 150, 150), (215, 210, 200), (165, 90, 70),
        (190, 160, 120), (130, 125, 120), (200, 180, 140), (160, 170, 180), (225, 215, 190),
    )
    glass: tuple[RGB, ...] = ((50, 60, 75), (70, 80, 95), (35, 40, 50), (120, 140, 160), (90, 95, 100))
    frame: tuple[RGB, ...] = ((235, 235, 230), (60, 55, 50), (200, 195, 180))
    wall: tuple[RGB, ...] = ((170, 165, 155), (150, 140, 125), (185, 180, 170), (140, 110, 95), (120, 120, 118))
    fence: tuple[RGB, ...] = ((110, 110, 105), (140, 110, 75), (80, 90, 85), (170, 165, 160))
    pole: tuple[RGB, ...] = ((130, 132, 135), (90, 92, 95), (60, 75, 65), (170, 172, 175))
    car: tuple[RGB, ...] = (
        (225, 225, 228), (30, 30, 35), (160, 162, 168), (110, 112, 118), (30, 45, 110), (170, 30, 30),
        (100, 20, 25), (40, 90, 160), (50, 85, 60), (200, 185, 150), (210, 120, 30), (70, 70, 80),
    )
    truck: tuple[RGB, ...] = (
        (235, 235, 235), (200, 40, 35), (40, 70, 150), (230, 180, 30), (90, 110, 90), (150, 150, 155)
    )
    bus: tuple[RGB, ...] = ((240, 200, 40), (200, 40, 40), (235, 235, 235), (40, 120, 180), (60, 150, 80))
    tram: tuple[RGB, ...] = ((230, 230, 225), (210, 60, 50), (60, 110, 170))
    skin: tuple[RGB, ...] = ((240, 200, 170), (210, 160, 120), (160, 110, 80), (110, 75, 55), (225, 180, 150))
    hair: tuple[RGB, ...] = ((30, 25, 20), (90, 60, 30), (180, 150, 90), (130, 130, 130), (60, 40, 25))
    clothes: tuple[RGB, ...] = (
        (30, 30, 35), (60, 70, 110), (150, 30, 40), (200, 200, 195), (90, 110, 70), (170, 140, 100),
        (40, 60, 140), (120, 120, 125), (220, 170, 40), (100, 50, 100), (200, 90, 60), (50, 50, 60),
    )
    trousers: tuple[RGB, ...] = ((40, 45, 70), (30, 30, 32), (70, 75, 85), (150, 130, 100), (60, 60, 60), (90, 80, 70))
    bike: tuple[RGB, ...] = ((30, 30, 30), (150, 30, 30), (40, 70, 140), (180, 180, 180), (40, 110, 60), (210, 200, 60))
    sign: tuple[RGB, ...] = ((200, 30, 30), (30, 80, 170), (230, 230, 230), (240, 200, 30), (30, 130, 60))
    light_housing: tuple[RGB, ...] = ((30, 30, 30), (45, 48, 45), (170, 150, 40), (60, 60, 65))
    ego: tuple[RGB, ...] = ((25, 25, 28), (200, 200, 205), (60, 65, 80), (120, 20, 25))
    skyline: tuple[RGB, ...] = ((150, 155, 170), (130, 135, 150), (165, 160, 165), (120, 125, 135))


PALETTE = Palette()


def pick(rng: np.random.Generator, choices: tuple[RGB, ...], jitter: float = 12.0) -> RGB:
    """One colour of ``choices`` with brightness and per-channel jitter."""
    u = rng.random(5)
    base = choices[int(u[0] * len(choices))]
    gain = 0.88 + 0.24 * u[1]
    spread = jitter * 1.732  # uniform jitter with standard deviation ``jitter``
    return (
        min(255.0, max(0.0, base[0] * gain + spread * (2.0 * u[2] - 1.0))),
        min(255.0, max(0.0, base[1] * gain + spread * (2.0 * u[3] - 1.0))),
        min(255.0, max(0.0, base[2] * gain + spread * (2.0 * u[4] - 1.0))),
    )


def scaled(rgb: RGB, factor: float) -> RGB:
    """A colour scaled in brightness (not clipped; drawing clips)."""
    return (rgb[0] * factor, rgb[1] * factor, rgb[2] * factor)


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """Linear blend ``(1 - t) * a + t * b``."""
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)

