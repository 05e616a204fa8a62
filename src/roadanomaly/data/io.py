"""Reading images and label maps from disk, with one-line errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from roadanomaly.errors import UserError, first_line

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UserError(path, f"cannot read image ({first_line(error)})") from None


def read_label(path: str | Path) -> np.ndarray:
    """Read a single-channel label map as (H, W) uint8 (palette images give their indices)."""
    try:
        with Image.open(path) as image:
            if image.mode in ("L", "P"):
                array = np.asarray(image)
            elif image.mode in ("I", "I;16", "I;16B", "I;16L"):
                array = np.asarray(image).astype(np.int64)
                if array.size and (array.min() < 0 or array.max() > 255):
                    raise UserError(path, f"label values outside 0..255 (max {int(array.max())})")
                array = array.astype(np.uint8)
            elif image.mode == "1":
                array = np.asarray(image).astype(np.uint8)
            else:
                raise UserError(path, f"label must be a single-channel image, found mode {image.mode}")
            return np.ascontiguousarray(array)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UserError(path, f"cannot read label ({first_line(error)})") from None

