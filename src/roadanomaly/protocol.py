"""The evaluation protocol: at what resolution scores are compared with labels, and which images count.

``native`` runs the model on the full image and compares at the label's resolution. A fixed size such as
``512x1024`` (as the course scripts use) resizes the image bilinearly and the label by nearest neighbour to that
size; a single number ``N`` resizes both so that the shorter side is N.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from roadanomaly.scoring import ScoringConfig


def parse_size(text: str) -> tuple[int, int] | int | None:
    """``native`` -> None, ``HxW`` -> (H, W), ``N`` -> N (shorter side). Raises ValueError on anything else."""
    text = text.strip().lower()
    if text == "native":
        return None
    fixed = re.fullmatch(r"(\d+)x(\d+)", text)
    if fixed and int(fixed[1]) > 0 and int(fixed[2]) > 0:
        return int(fixed[1]), int(fixed[2])
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ValueError(f"invalid size {text!r}: use 'native', HxW (e.g. 512x1024) or a shorter side (e.g. 512)")


@dataclass(frozen=True)
class EvalProtocol:
    """How images and labels are prepared before scoring, and how logits become scores."""

    size: str = "native"
    skip_no_anomaly: bool = False
    scoring: ScoringConfig = ScoringConfig()

    def __post_init__(self) -> None:
        parse_size(self.size)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) at which an image of ``height`` x ``width`` is evaluated."""
        size = parse_size(self.size)
        if size is None:
            return height, width
        if isinstance(size, tuple):
            return size
        scale = size / min(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def prepare(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Resize ``image`` (bilinear) and ``label`` (nearest) to the evaluation size."""
        h, w = self.target_size(*label.shape)
        if (h, w) == label.shape and image.shape[:2] == label.shape:
            return image, label
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
        label = np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))
        return image, label

    def to_dict(self) -> dict:
        return {
            "size": self.size,
            "skip_images_without_anomaly": self.skip_no_anomaly,
            "temperature": self.scoring.temperature,
            "include_void_in_softmax": self.scoring.include_void,
            "void_label": 255,
            "pixels": "all valid pixels of a dataset pooled",
        }
