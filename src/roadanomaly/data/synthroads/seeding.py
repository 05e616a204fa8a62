"""Per-image random generators keyed by (base seed, split, index)."""

from __future__ import annotations

import zlib

import numpy as np


def split_key(split: str) -> int:
    """A stable 32-bit integer for a split name (independent of Python's hash seed)."""
    return zlib.crc32(split.encode("utf-8"))


def image_seed_sequence(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """The seed sequence of image ``index`` of ``split``: independent of how many images are generated."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.SeedSequence([int(seed), split_key(split), int(index)])


def image_generators(seed: int, split: str, index: int, count: int = 2) -> list[np.random.Generator]:
    """``count`` independent generators for one image: [0] draws the scene, [1] the anomalies, ..."""
    return [np.random.default_rng(child) for child in image_seed_sequence(seed, split, index).spawn(count)]
