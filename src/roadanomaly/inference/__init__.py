"""Inference: turn an RGB uint8 image batch into :class:`~roadanomaly.outputs.PixelOutputs` for a model.

A predictor is any callable ``predictor(images) -> PixelOutputs`` where ``images`` is a (B, 3, H, W) uint8 RGB
tensor; it does its own preprocessing and returns maps at the image's resolution. It carries ``info`` (a dict
written into result files) and ``device``.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor

from roadanomaly.outputs import OutputSpec, PixelOutputs


class Predictor(Protocol):
    info: dict[str, Any]
    device: str
    spec: OutputSpec
    """What the outputs will hold, declared before any forward pass (decides the available methods)."""

    def __call__(self, images: Tensor) -> PixelOutputs: ...


from roadanomaly.inference.registry import MODEL_KINDS, load_predictor, model_kind, model_kind_names  # noqa: E402

__all__ = ["MODEL_KINDS", "Predictor", "load_predictor", "model_kind", "model_kind_names"]
