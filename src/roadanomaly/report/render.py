"""Pictures of score maps: colour heatmaps and heatmaps blended over the image, with the anomaly outline."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from roadanomaly.labels import ANOMALY, VOID
from roadanomaly.errors import UserError

COLORMAP = "inferno"
OUTLINE_RGB = (0, 255, 255)


def require_matplotlib():
    """Import matplotlib with the Agg backend, or tell the user how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise UserError(None, "plots need matplotlib: pip install 'roadanomaly[plots]'") from None
    matplotlib.use("Agg", force=True)
    return matplotlib


def normalized(score: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """``score`` scaled to [0, 1] by its min and max (over ``valid`` pixels when given); flat maps give 0."""
    score = np.asarray(score, dtype=np.float32)
    values = score[valid] if valid is not None and valid.any() else score
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(score)
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.zeros_like(score)
    return np.clip((np.nan_to_num(score, nan=low) - low) / (high - low), 0.0, 1.0)


def heatmap(score: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 colour image of ``score`` (min-max normalised, the colormap ``inferno``)."""
    require_matplotlib()
    from matplotlib import colormaps

    lut = (colormaps[COLORMAP](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)
    return lut[(normalized(score, valid) * 255).round().astype(np.uint8)]


def overlay(image: np.ndarray, score: np.ndarray, label: np.ndarray | None = None, alpha: float = 0.55) -> np.ndarray:
    """The heatmap blended over ``image`` (H, W, 3 uint8); void pixels dimmed, anomaly pixels outlined in cyan."""
    valid = None if label is None else label != VOID
    heat = heatmap(score, valid).astype(np.float32)
    out = (1.0 - alpha) * image.astype(np.float32) + alpha * heat
    if label is not None:
        out[~valid] = 0.35 * image[~valid].astype(np.float32)
        out[outline(label == ANOMALY)] = OUTLINE_RGB
    return out.round().clip(0, 255).astype(np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """The inner boundary of a boolean mask: pixels of the mask with a 4-neighbour outside it."""
    padded = np.pad(mask, 1, mode="edge")
    inside = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inside


def thumbnail_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(H, W) scaled so that the longer side is at most ``max_side`` (never enlarged)."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (H, W, 3) uint8 image to ``size`` (H, W)."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def resize_score(score: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (H, W) float map to ``size`` (H, W), as float32."""
    score = np.asarray(score, dtype=np.float32)
    if score.shape == tuple(size):
        return score
    return np.asarray(Image.fromarray(score).resize((size[1], size[0]), Image.BILINEAR))


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) uint8 label map to ``size`` (H, W)."""
    if label.shape == tuple(size):
        return label
    return np.asarray(Image.fromarray(label).resize((size[1], size[0]), Image.NEAREST))


def save_png(path: Path, array: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 array as PNG, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")
    return path


def slug(text: str) -> str:
    """``text`` made safe as a file name part (letters, digits, ``.``, ``_``, ``-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"
