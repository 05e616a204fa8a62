"""Reading images and label maps from disk, with one-line errors that name the file.

Images of any common mode are read as 8-bit RGB: grey and palette images are expanded, an alpha channel is dropped
(not composited), 16-bit samples keep their high byte (65535 -> 255). Labels are read as one 8-bit value per pixel:
palette images give their indices, 16-bit images are accepted when every value fits in 0..255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from roadanomaly.errors import UserError, first_line

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_LABEL_MODES = ("L", "P", "1", "I", *_SIXTEEN_BIT)


def is_listed_file(path: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> bool:
    """Whether ``path`` is a data file to read: a regular file with one of ``extensions``, not hidden.

    Hidden files (``.DS_Store``, macOS ``._name.png`` resource forks) are never images.
    """
    return path.suffix.lower() in extensions and not path.name.startswith(".") and path.is_file()


def _open(path: Path, role: str) -> Image.Image:
    """The ``role`` ("image" or "label") file at ``path``, fully decoded (close it after use); an unreadable file
    is a UserError naming it and saying why."""
    try:
        if path.stat().st_size == 0:
            raise UserError(path, f"cannot read {role}: empty file (0 bytes)")
        image = Image.open(path)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - see _why
        raise UserError(path, f"cannot read {role}: {_why(error)}") from None
    try:
        image.load()
    except Exception as error:  # noqa: BLE001
        image.close()
        raise UserError(path, f"cannot read {role}: {_why(error)}") from None
    return image


def _why(error: Exception) -> str:
    """Why a file cannot be decoded, in a few words (a damaged file can make a decoder raise almost anything)."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "it is a folder"
    if isinstance(error, UnidentifiedImageError):
        return "its contents are in no known image format"
    if isinstance(error, Image.DecompressionBombError):
        return f"too large to decode ({first_line(error)})"
    if isinstance(error, OSError) and "truncated" in str(error).lower():
        return "the file is truncated (its data ends early)"
    if isinstance(error, OSError):
        return f"corrupt data ({first_line(error)})"
    return f"corrupt data ({type(error).__name__}: {first_line(error)})"


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB (grey, palette, alpha and 16-bit images converted, see the module)."""
    path = Path(path)
    with _open(path, "image") as image:
        if image.mode in _SIXTEEN_BIT or image.mode == "I":
            grey = np.asarray(image).astype(np.int64)
            if grey.size and (grey.min() < 0 or grey.max() > 65535):
                raise UserError(path, f"cannot read image: {image.mode} values outside 0..65535 (expected 8- or "
                                "16-bit samples)")
            return np.ascontiguousarray(np.repeat((grey >> 8).astype(np.uint8)[..., None], 3, axis=2))
        if image.mode == "F":
            raise UserError(path, "cannot read image: floating-point samples (expected 8- or 16-bit)")
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def read_label(path: str | Path) -> np.ndarray:
    """Read a single-channel label map as (H, W) uint8 (palette images give their indices)."""
    path = Path(path)
    with _open(path, "label") as image:
        if image.mode not in _LABEL_MODES:
            raise UserError(path, f"label must be a single-channel image, found mode {image.mode}")
        array = np.asarray(image)
        if array.dtype != np.uint8:
            wide = array.astype(np.int64)
            if wide.size and (wide.min() < 0 or wide.max() > 255):
                bad = int(wide.min()) if wide.min() < 0 else int(wide.max())
                raise UserError(path, f"label values outside 0..255 (found {bad})")
            array = wide.astype(np.uint8)
        return np.ascontiguousarray(array)


def read_pair(image_path: Path, label_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An image and its raw label map, checked to be the same size."""
    image, label = read_image(image_path), read_label(label_path)
    if label.shape != image.shape[:2]:
        raise UserError(
            label_path, f"label is {label.shape[0]}x{label.shape[1]} but its image is {image.shape[0]}x{image.shape[1]}"
        )
    return image, label
