"""The evaluation protocol: at what resolution scores are compared with labels, which images count, and how the
metrics are defined. Named presets (:data:`PROTOCOL_PRESETS`, ``--protocol NAME``) are plain data:

- ``native`` (default): full-resolution images, every image, pixels of a dataset pooled (:class:`AnomalyMetric`).
- ``course``: images and labels resized to 512x1024, images without anomaly skipped, a void channel excluded from
  the softmax (the course scripts' protocol).
- ``smiyc-anomaly`` / ``smiyc-obstacle``: the SegmentMeIfYouCan toolkit's definitions: scores stored as float16,
  per-frame quantile bins (:mod:`roadanomaly.metrics.smiyc`), and component metrics (sIoU, PPV, mean F1;
  :mod:`roadanomaly.metrics.components`) with that track's component sizes at the pixel curve's best-F1 threshold.

``size``: ``native`` compares at the label's resolution; ``HxW`` (e.g. ``512x1024``) resizes the image bilinearly
and the label by nearest neighbour; a single number ``N`` resizes both so that the shorter side is N.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from roadanomaly.metrics.anomaly import DEFAULT_BITS, MODES, AnomalyMetric
from roadanomaly.labels import VOID
from roadanomaly.metrics.components import TRACK_SIZES, ComponentMetric
from roadanomaly.metrics.smiyc import NUM_BINS, SmiycPixelMetric
from roadanomaly.scoring import ScoringConfig

#: Pixel metric kinds: ``pooled`` = :class:`AnomalyMetric` over all valid pixels; ``smiyc`` = the SMIYC toolkit's.
PIXEL_METRICS = ("pooled", "smiyc")


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
    name: str = "native"
    pixel_metric: str = "pooled"
    components: str | None = None  # None, or the SMIYC track whose component sizes to use: "anomaly" / "obstacle"
    component_threshold: float | None = None  # None: the pixel curve's best-F1 threshold (computed at the end)

    def __post_init__(self) -> None:
        parse_size(self.size)
        if self.pixel_metric not in PIXEL_METRICS:
            raise ValueError(f"unknown pixel metric {self.pixel_metric!r} (known: {', '.join(PIXEL_METRICS)})")
        if self.components is not None and self.components not in TRACK_SIZES:
            raise ValueError(f"unknown component track {self.components!r} (known: {', '.join(TRACK_SIZES)})")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "EvalProtocol":
        """The preset called ``name`` (case-insensitive) with some fields replaced, e.g. ``preset("native", size="512")``."""
        preset = PROTOCOL_PRESETS.get(name.lower())
        if preset is None:
            raise ValueError(f"unknown protocol {name!r} (known: {', '.join(PROTOCOL_PRESETS)})")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"unknown protocol field(s) {', '.join(unknown)} (fields: {', '.join(sorted(fields))})")
        return dataclasses.replace(preset, **overrides)

    @property
    def score_dtype(self) -> torch.dtype | None:
        """The dtype scores are stored in before any metric sees them (None: as the model computed them)."""
        return torch.float16 if self.pixel_metric == "smiyc" else None

    def new_metrics(self, mode: str = "binned", bits: int = DEFAULT_BITS) -> dict[str, Any]:
        """Fresh metrics for one (dataset, method): ``{"pixel": ..., "components": ...}`` (the latter when enabled).

        Feed every metric each frame with ``update(scores, labels)`` (one 2-D frame per call; labels 0/1/255) and
        merge ``compute()`` of all of them, in order, into the result row: ``pixel`` gives ``auprc``, ``fpr95``,
        ``auroc``, ``pixels``, ``anomaly_pixels``; ``components`` gives ``siou``, ``ppv``, ``mean_f1`` and more.
        ``mode`` (``binned`` / ``exact``) and ``bits`` (the binned state's size, see :func:`bits_for_memory`) apply to
        the pooled pixel metric; SMIYC's binning is its definition.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        pixel = SmiycPixelMetric() if self.pixel_metric == "smiyc" else AnomalyMetric(mode, bits=bits)
        metrics: dict[str, Any] = {"pixel": pixel}
        if self.components is not None:
            threshold = self.component_threshold
            if threshold is None and hasattr(pixel, "best_f1_threshold"):
                threshold = pixel  # the pixel curve of the same frames tells the threshold at compute time
            metrics["components"] = ComponentMetric.for_track(self.components, threshold, score_dtype=self.score_dtype)
        return metrics

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
        """Everything that defines the protocol, for the results file."""
        pixels = {
            "pooled": "all valid pixels of a dataset pooled",
            "smiyc": f"SMIYC: float16 scores, per-frame quantile bins ({NUM_BINS} quantiles at most), pooled curve",
        }[self.pixel_metric]
        document: dict[str, Any] = {
            "name": self.name,
            "size": self.size,
            "skip_images_without_anomaly": self.skip_no_anomaly,
            "temperature": self.scoring.temperature,
            "include_void_in_softmax": self.scoring.include_void,
            "void_label": VOID,
            "pixels": pixels,
            "pixel_metric": self.pixel_metric,
            "scores_dtype": "float16" if self.score_dtype == torch.float16 else "as computed",
            "components": None,
        }
        if self.components is not None:
            min_pred, min_gt = TRACK_SIZES[self.components]
            document["components"] = {
                "track": self.components,
                "min_predicted_component_px": min_pred,
                "min_ground_truth_component_px": min_gt,
                "threshold": "pixel best F1" if self.component_threshold is None else self.component_threshold,
                "connectivity": 8,
                "siou_thresholds": "0.25:0.75:0.05",
            }
        return document


#: The named protocols; ``EvalProtocol.preset(name, **overrides)`` returns one with fields replaced.
PROTOCOL_PRESETS: dict[str, EvalProtocol] = {
    "native": EvalProtocol(),
    "course": EvalProtocol(size="512x1024", skip_no_anomaly=True, scoring=ScoringConfig(include_void=False),
                           name="course"),
    "smiyc-anomaly": EvalProtocol(name="smiyc-anomaly", pixel_metric="smiyc", components="anomaly"),
    "smiyc-obstacle": EvalProtocol(name="smiyc-obstacle", pixel_metric="smiyc", components="obstacle"),
}
