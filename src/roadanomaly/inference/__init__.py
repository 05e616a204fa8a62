"""Inference: turn an RGB uint8 image batch into :class:`~roadanomaly.outputs.PixelOutputs` for a model.

A predictor is any callable ``predictor(images) -> PixelOutputs`` where ``images`` is a (B, 3, H, W) uint8 RGB
tensor; it does its own preprocessing and returns maps at the image's resolution. It carries ``info`` (a dict
written into result files) and ``device``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from torch import Tensor

from roadanomaly.outputs import PixelOutputs

MODEL_NAMES: tuple[str, ...] = ("erfnet", "eomt")


class Predictor(Protocol):
    info: dict[str, Any]
    device: str

    def __call__(self, images: Tensor) -> PixelOutputs: ...


def load_predictor(model: str, weights: str | Path, device: str = "cpu", **options: Any) -> Predictor:
    """Build the predictor for ``model`` from the weights at ``weights`` (a file or, for EoMT, an HF folder)."""
    if model == "erfnet":
        from roadanomaly.inference.erfnet import load_erfnet_predictor

        return load_erfnet_predictor(weights, device=device, **options)
    if model == "eomt":
        from roadanomaly.inference.eomt import load_eomt_predictor

        return load_eomt_predictor(weights, device=device, **options)
    raise ValueError(f"unknown model {model!r} (known: {', '.join(MODEL_NAMES)})")
