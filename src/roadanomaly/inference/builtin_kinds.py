"""Registry entries of the model kinds that ship with roadanomaly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from roadanomaly.inference.registry import ModelKind, register_model_kind


def _erfnet(weights: Path, **options: Any):
    from roadanomaly.inference.erfnet import load_erfnet_predictor

    return load_erfnet_predictor(weights, **options)


def _eomt(weights: Path, **options: Any):
    from roadanomaly.inference.eomt import load_eomt_predictor

    return load_eomt_predictor(weights, **options)


register_model_kind(ModelKind("erfnet", "ERFNet (Romera et al.): published, plain or Lightning checkpoints", _erfnet))
register_model_kind(
    ModelKind(
        "eomt",
        "EoMT: official checkpoint, Hugging Face folder or roadanomaly folder",
        _eomt,
        options=frozenset({"crop_size", "autocast"}),
    )
)
