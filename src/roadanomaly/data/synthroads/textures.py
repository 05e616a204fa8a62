"""Per-class surface texture and global photometry, applied to a drawn base image.

Texture comes from a bank of fixed noise fields (fine grain, leafy mid-frequency, large blotches),
cropped at per-image random offsets and weighted per pixel by the label's amplitudes, so that each
class has its own texture statistics without any per-pixel Python work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from ..labels import IGNORE_INDEX, TRAIN_ID_NAMES
from .canvas import ANOMALY_LABEL
from .config import LightingConfig

_BANK_SEED = 20240917
_INTERNAL_KEYS = {"void": IGNORE_INDEX, "anomaly": ANOMALY_LABEL}


@dataclass(frozen=True)
class TextureConfig:
    """Noise amplitudes per class name: (fine grain in grey levels, leafy in grey levels, blotch relative)."""

    amplitudes: dict[str, tuple[float, float, float]] = field(
        default_factory=lambda: {
            "road": (6.0, 3.0, 0.10),
            "sidewalk": (6.0, 4.0, 0.07),
            "building": (4.0, 3.0, 0.08),
            "wall": (8.0, 5.0, 0.12),
            "fence": (4.0, 2.0, 0.05),
            "pole": (3.0, 1.0, 0.04),
            "traffic light": (3.0, 1.0, 0.03),
            "traffic sign": (2.0, 1.0, 0.03),
            "vegetation": (12.0, 20.0, 0.18),
            "terrain": (11.0, 8.0, 0.20),
            "sky": (1.0, 0.5, 0.05),
            "person": (4.0, 3.0, 0.05),
            "rider": (4.0, 3.0, 0.05),
            "car": (3.0, 1.0, 0.04),
            "truck": (3.0, 2.0, 0.05),
            "bus": (3.0, 1.0, 0.04),
            "train": (3.0, 1.0, 0.04),
            "motorcycle": (3.0, 1.0, 0.04),
            "bicycle": (3.0, 1.0, 0.04),
            "void": (3.0, 1.0, 0.03),
            "anomaly": (6.0, 5.0, 0.10),
        }
    )

    def luts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Three float32 lookup tables of length 256 indexed by label value."""
        tables = np.zeros((3, 256), np.float32)
        for name, amps in self.amplitudes.items():
            index = _INTERNAL_KEYS[name] if name in _INTERNAL_KEYS else TRAIN_ID_NAMES.index(name)
            tables[:, index] = amps
        return tables[0], tables[1], tables[2]


@dataclass(frozen=True)
class NoiseBank:
    """Unit-variance noise fields twice the image size; crops of them texture each image."""

    fine: np.ndarray
    leafy: np.ndarray
    blotch: np.ndarray
    vignette: np.ndarray
    """Squared normalised distance from the image centre, (H, W)."""


def _unit(field_: np.ndarray) -> np.ndarray:
    field_ = field_ - field_.mean()
    return (field_ / max(float(field_.std()), 1e-6)).astype(np.float32)


@lru_cache(maxsize=8)
def noise_bank(height: int, width: int) -> NoiseBank:
    """The (deterministic) noise bank for one image size."""
    rng = np.random.default_rng(_BANK_SEED)
    shape = (2 * height, 2 * width)
    white = rng.standard_normal(shape).astype(np.float32)
    leafy = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 1.1)
    scale = max(height, width) / 512.0
    blotch = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 6.0 * scale)
    blotch = _unit(blotch) + 0.7 * _unit(
        cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 22.0 * scale)
    )
    ys = (np.arange(height, dtype=np.float32) - height / 2) / (height / 2)
    xs = (np.arange(width, dtype=np.float32) - width / 2) / (width / 2)
    vignette = (ys[:, None] ** 2 + xs[None, :] ** 2) / 2.0
    return NoiseBank(_unit(white), _unit(leafy), _unit(blotch), vignette.astype(np.float32))


@dataclass(frozen=True)
class Photometry:
    """Per-image finishing parameters (drawn when the scene is planned)."""

    offsets: tuple[tuple[int, int], ...]
    """Crop offsets into the fine, leafy, blotch and sensor-noise fields."""
    brightness: float
    contrast: float
    gain: tuple[float, float, float]
    vignette: float
    antialias_sigma: float
    sensor_noise: float
    cloudiness: float
    """Multiplier of the sky's blotch amplitude (clouds)."""

    @classmethod
    def sample(cls, rng: np.random.Generator, config: LightingConfig, height: int, width: int) -> Photometry:
        offsets = tuple((int(rng.integers(0, height)), int(rng.integers(0, width))) for _ in range(4))
        gain = 1.0 + rng.uniform(-config.tint, config.tint, size=3)
        return cls(
            offsets=offsets,
            brightness=float(rng.uniform(*config.brightness)),
            contrast=float(rng.uniform(*config.contrast)),
            gain=(float(gain[0]), float(gain[1]), float(gain[2])),
            vignette=float(rng.uniform(*config.vignette)),
            antialias_sigma=float(rng.uniform(*config.antialias_sigma)),
            sensor_noise=float(rng.uniform(*config.sensor_noise)),
            cloudiness=float(rng.choice([0.3, 1.0, 2.0, 3.0])),
        )


_DEFAULT_TEXTURES = TextureConfig()
_SKY = TRAIN_ID_NAMES.index("sky")


@lru_cache(maxsize=4)
def _default_luts() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _DEFAULT_TEXTURES.luts()


def finish(
    base: np.ndarray, labels: np.ndarray, photometry: Photometry, textures: TextureConfig | None = None
) -> np.ndarray:
    """Texture, light and blur a drawn base image; returns the final uint8 RGB image.

    Per pixel and channel: ``((base * blotch + grain - pivot) * contrast + pivot) * light * gain``,
    folded into one multiply and one add per channel.
    """
    height, width = labels.shape
    bank = noise_bank(height, width)
    fine_lut, leafy_lut, blotch_lut = _default_luts() if textures is None else textures.luts()
    blotch_lut = blotch_lut.copy()
    blotch_lut[_SKY] *= photometry.cloudiness

    def crop(field_: np.ndarray, k: int) -> np.ndarray:
        oy, ox = photometry.offsets[k]
        return field_[oy : oy + height, ox : ox + width]

    pivot, contrast = 110.0, photometry.contrast
    light = 1.0 - photometry.vignette * bank.vignette
    light *= photometry.brightness
    scale = cv2.LUT(labels, blotch_lut) * crop(bank.blotch, 2)
    scale += 1.0
    scale *= light
    scale *= contrast
    grain = cv2.LUT(labels, fine_lut) * crop(bank.fine, 0)
    grain += cv2.LUT(labels, leafy_lut) * crop(bank.leafy, 1)
    grain += photometry.sensor_noise * crop(bank.fine, 3)
    grain -= pivot
    grain *= contrast
    grain += pivot
    grain *= light
    gain = photometry.gain
    img = cv2.GaussianBlur(base, (3, 3), photometry.antialias_sigma).astype(np.float32)
    img = cv2.multiply(img, cv2.merge([scale * gain[0], scale * gain[1], scale * gain[2]]))
    img = cv2.add(img, cv2.merge([grain * gain[0], grain * gain[1], grain * gain[2]]))
    np.clip(img, 0.0, 255.0, out=img)
    return img.astype(np.uint8)
