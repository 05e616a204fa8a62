"""Outlier cut-outs of the SynthOutlier family: one object (RGB + binary alpha) at a time, for outlier exposure.

Diversity is the point: a model trained to flag these must generalise to objects nobody here drew, so each
cut-out combines

- a silhouette: polygon, star, smooth blob, ellipse, superellipse, crescent, thick stroke, elongated plank,
  thresholded noise, or a union of two to four of these;
- a material: flat colour, value noise, 1/f ("natural") noise, checker, stripes, rings, Voronoi cells, wood grain,
  gradient; colours from a natural (earthy / grey / saturated) or a uniform palette;
- photograph-like statistics: Lambertian shading of a pseudo-height field (a bump from the distance to the border),
  darkened rims, an optional specular highlight, sensor grain and a slight blur.

None of the silhouettes is an animal, a debris pile or a road obstacle of the test families.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .anomaly_shapes import radial_blob

SILHOUETTES = (
    "polygon", "star", "blob", "ellipse", "superellipse", "crescent", "stroke", "plank", "noise", "compound",
)  # fmt: skip
MATERIALS = ("flat", "noise", "pink", "checker", "stripes", "rings", "cells", "wood", "gradient")
SHIFT = 4  # sub-pixel bits for cv2 drawing


@dataclass(frozen=True)
class Cutout:
    """An object to paste: ``rgb`` (h, w, 3) uint8 and ``alpha`` (h, w) float32 in [0, 1] (1 = object)."""

    rgb: np.ndarray
    alpha: np.ndarray

    def __post_init__(self) -> None:
        if self.rgb.shape[:2] != self.alpha.shape or self.rgb.ndim != 3 or self.rgb.shape[2] != 3:
            raise ValueError(f"cut-out rgb {self.rgb.shape} and alpha {self.alpha.shape} do not match")


def _fill(mask: np.ndarray, pts: np.ndarray) -> None:
    cv2.fillPoly(mask, [np.rint(pts * (1 << SHIFT)).astype(np.int32)], 1, cv2.LINE_8, SHIFT)


def _silhouette(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """A uint8 (n, n) mask of one silhouette centred in the square."""
    mask = np.zeros((n, n), np.uint8)
    c, r = n / 2, n * 0.45
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    if kind == "polygon":
        k = int(rng.integers(3, 12))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = r * rng.uniform(0.45, 1.0, k)
        _fill(mask, np.stack([c + rad * np.cos(ang), c + rad * np.sin(ang)], -1))
    elif kind == "star":
        k = int(rng.integers(3, 12))
        ang = rng.uniform(0, 2 * np.pi) + np.pi * np.arange(2 * k) / k
        rad = np.where(np.arange(2 * k) % 2 == 0, r, r * rng.uniform(0.25, 0.7))
        _fill(mask, np.stack([c + rad * np.cos(ang), c + rad * np.sin(ang)], -1))
    elif kind == "blob":
        _fill(mask, radial_blob(rng, 24, float(rng.uniform(0.15, 0.45))) * r + c)
    elif kind in ("ellipse", "superellipse"):
        a, b = r, r * rng.uniform(0.3, 1.0)
        p = 2.0 if kind == "ellipse" else float(rng.choice([0.6, 0.8, 3.0, 4.0, 6.0]))
        x = a * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** (2 / p)
        y = b * np.sign(np.sin(t)) * np.abs(np.sin(t)) ** (2 / p)
        rot = rng.uniform(0, np.pi)
        _fill(mask, np.stack([c + x * np.cos(rot) - y * np.sin(rot), c + x * np.sin(rot) + y * np.cos(rot)], -1))
    elif kind == "crescent":
        cv2.circle(mask, (int(c), int(c)), int(r), 1, -1)
        off = r * rng.uniform(0.3, 0.8)
        ang = rng.uniform(0, 2 * np.pi)
        cv2.circle(mask, (int(c + off * np.cos(ang)), int(c + off * np.sin(ang))), int(r * 0.9), 0, -1)
    elif kind == "stroke":
        k = int(rng.integers(2, 6))
        pts = np.rint(rng.uniform(n * 0.12, n * 0.88, (k, 2))).astype(np.int32)
        cv2.polylines(mask, [pts], False, 1, max(2, int(n * rng.uniform(0.08, 0.2))), cv2.LINE_8)
    elif kind == "plank":
        a, b, rot = r, r * rng.uniform(0.08, 0.3), rng.uniform(0, np.pi)
        box = np.array([[-a, -b], [a, -b], [a, b], [-a, b]])
        rm = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
        _fill(mask, box @ rm.T + c)
    elif kind == "noise":
        field = cv2.GaussianBlur(rng.standard_normal((n, n)).astype(np.float32), (0, 0), n / 10)
        disc = np.zeros_like(mask)
        cv2.circle(disc, (int(c), int(c)), int(r), 1, -1)
        mask[(field > np.quantile(field[disc > 0], 0.35)) & (disc > 0)] = 1
    else:  # compound: a union of 2..4 smaller silhouettes, overlapping around the centre
        for _ in range(int(rng.integers(2, 5))):
            part = _silhouette(rng, str(rng.choice(SILHOUETTES[:-1])), n // 2)
            dy, dx = (int(v) for v in rng.integers(0, n - n // 2 + 1, 2) // 2 + n // 8)
            mask[dy : dy + n // 2, dx : dx + n // 2] |= part
    return mask


def _palette(rng: np.random.Generator) -> np.ndarray:
    """Two float32 RGB colours: natural (earthy/grey), saturated or uniform."""
    style = rng.integers(3)
    if style == 0:  # earthy and greyish tones, as most real objects on roads
        base = rng.uniform(30, 220)
        tint = rng.normal(0, 25, 3) + np.array([12, 4, -10]) * rng.uniform(-1, 2)
        colours = [np.clip(base * rng.uniform(0.6, 1.2) + tint, 0, 255) for _ in range(2)]
    elif style == 1:  # saturated: plastic, paint
        hsv = np.uint8([[[rng.integers(180), rng.integers(150, 256), rng.integers(90, 256)]]])
        first = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
        colours = [first, np.clip(first * rng.uniform(0.3, 1.3), 0, 255)]
    else:
        colours = [rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)]
    return np.asarray(colours, np.float32)


def _pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, n) noise with a 1/f^beta spectrum (beta in 1.5..2.5, like natural images), scaled to [0, 1]."""
    fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) / f ** (rng.uniform(1.5, 2.5) / 2)
    field = np.real(np.fft.ifft2(spectrum)).astype(np.float32)
    return (field - field.min()) / max(float(np.ptp(field)), 1e-6)


def _material(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """A float32 (n, n, 3) texture in 0..255."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    period = float(rng.uniform(3, max(4.0, n / 3)))
    if kind == "flat":
        t = np.zeros((n, n), np.float32)
    elif kind == "noise":
        t = np.clip(0.5 + 0.3 * cv2.GaussianBlur(rng.standard_normal((n, n)).astype(np.float32), (0, 0), 1.0), 0, 1)
    elif kind == "pink":
        t = _pink_noise(rng, n)
    elif kind == "checker":
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif kind == "stripes":
        t = (np.sin(2 * np.pi * u / period) > rng.uniform(-0.5, 0.5)).astype(np.float32)
    elif kind == "rings":
        t = (np.sin(2 * np.pi * np.hypot(xx - n / 2, yy - n / 2) / period) > 0).astype(np.float32)
    elif kind == "cells":
        seeds = rng.uniform(0, n, (int(rng.integers(4, 24)), 2)).astype(np.float32)
        d = np.hypot(xx[..., None] - seeds[:, 0], yy[..., None] - seeds[:, 1])
        part = np.sort(d, axis=-1)
        t = rng.uniform(0, 1, len(seeds)).astype(np.float32)[d.argmin(-1)]
        t = np.where(part[..., 1] - part[..., 0] < 1.2, 0.0, t).astype(np.float32)  # dark cell borders
    elif kind == "wood":
        warp = 4 * _pink_noise(rng, n)
        t = (0.5 + 0.5 * np.sin(2 * np.pi * (v / period + warp))).astype(np.float32)
    else:
        t = (u - u.min()) / max(float(np.ptp(u)), 1.0)
    c1, c2 = _palette(rng)
    return c1 * (1 - t[..., None]) + c2 * t[..., None]


def _photographic(rng: np.random.Generator, texture: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Shade, rim-darken, highlight, add grain and blur a texture as a camera would see a solid object."""
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    height = np.sqrt(dist / max(float(dist.max()), 1.0))
    gy, gx = np.gradient(cv2.GaussianBlur(height, (0, 0), 1.5) * mask.shape[0] * rng.uniform(0.05, 0.3))
    light = rng.normal(size=3)
    light[2] = abs(light[2]) + 0.5
    light /= np.linalg.norm(light)
    normal = np.stack([-gx, -gy, np.ones_like(gx)], -1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    lambert = np.clip(normal @ light, 0, 1)
    ambient = rng.uniform(0.35, 0.7)
    out = texture * (ambient + (1 - ambient) * lambert)[..., None]
    out *= (1 - rng.uniform(0, 0.4) * np.exp(-dist / 2))[..., None]  # darker rims (ambient occlusion)
    if rng.random() < 0.4:  # specular highlight
        spec = np.clip(normal @ (light + np.array([0, 0, 1.0])) / np.linalg.norm(light + [0, 0, 1.0]), 0, 1)
        out += 255 * rng.uniform(0.2, 0.7) * (spec ** rng.uniform(10, 60))[..., None]
    out *= rng.uniform(0.6, 1.3)  # exposure
    out += rng.normal(0, rng.uniform(1, 8), out.shape)  # sensor grain
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out.astype(np.float32), (0, 0), rng.uniform(0.4, 1.0))
    return np.clip(out, 0, 255).astype(np.uint8)


def synth_cutout(rng: np.random.Generator, size: int = 96) -> Cutout:
    """One SynthOutlier cut-out on a ``size`` x ``size`` square, cropped to the object's bounding box."""
    kind = str(rng.choice(SILHOUETTES))
    mask = _silhouette(rng, kind, size)
    if not mask.any():  # degenerate draw: fall back to a disc
        cv2.circle(mask, (size // 2, size // 2), size // 3, 1, -1)
    texture = _material(rng, str(rng.choice(MATERIALS)), size)
    if rng.random() < 0.3:  # a second material on part of the object (a label, a patch of paint)
        other = _material(rng, str(rng.choice(MATERIALS)), size)
        part = _silhouette(rng, "blob", size).astype(bool)
        texture[part] = other[part]
    rgb = _photographic(rng, texture, mask)
    ys, xs = np.nonzero(mask)
    box = slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)
    return Cutout(np.ascontiguousarray(rgb[box]), mask[box].astype(np.float32))
