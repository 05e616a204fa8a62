"""Registry entries of the model kinds that ship with roadanomaly: one :class:`ModelKind` each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from roadanomaly.errors import UserError
from roadanomaly.inference.registry import ModelKind, register_model_kind

PIXEL_OPTIONS: frozenset[str] = frozenset({"void_channel", "mean", "std", "pad_to"})
"""Options of the per-pixel models a user brings (see :class:`~roadanomaly.inference.pixel_model.LogitsPredictor`)."""


def _erfnet(weights: Path, backend: str = "torch", **options: Any):
    if backend != "torch":
        from roadanomaly.inference.backends import load_erfnet_predictor_on

        return load_erfnet_predictor_on(weights, backend, **options)
    from roadanomaly.inference.erfnet import load_erfnet_predictor

    return load_erfnet_predictor(weights, **options)


def _eomt(weights: Path, backend: str = "torch", **options: Any):
    if backend != "torch":
        if options.get("head") is not None:
            raise UserError(None, "--head runs on the PyTorch EoMT only (drop --backend onnxruntime)")
        from roadanomaly.inference.backends import load_eomt_predictor_on

        return load_eomt_predictor_on(weights, backend, **options)
    from roadanomaly.inference.eomt import load_eomt_predictor

    return load_eomt_predictor(weights, **options)


def _python(weights: Path, **options: Any):
    from roadanomaly.inference.user_models import load_python_predictor

    return load_python_predictor(weights, **options)


def _torchscript(weights: Path, **options: Any):
    from roadanomaly.inference.user_models import load_torchscript_predictor

    return load_torchscript_predictor(weights, **options)


def _exported(weights: Path, **options: Any):
    from roadanomaly.inference.user_models import load_exported_predictor

    return load_exported_predictor(weights, **options)


def _onnx(weights: Path, **options: Any):
    from roadanomaly.inference.user_models import load_onnx_predictor

    return load_onnx_predictor(weights, **options)


register_model_kind(
    ModelKind(
        "erfnet",
        "ERFNet (Romera et al.): published, plain or Lightning checkpoints, or its 'roadanomaly export' .onnx file",
        _erfnet,
        options=frozenset({"backend"}),
    )
)
register_model_kind(
    ModelKind(
        "eomt",
        "EoMT: official checkpoint, Hugging Face or roadanomaly folder, or its 'roadanomaly export' .onnx file",
        _eomt,
        options=frozenset({"crop_size", "autocast", "head", "backend"}),
    )
)
register_model_kind(
    ModelKind(
        "python",
        "your nn.Module: NAME(**model_kwargs) from FILE.py, weights loaded strictly; returns (B, C, h, w) logits",
        _python,
        options=PIXEL_OPTIONS | {"model_kwargs"},
        takes_target=True,
    )
)
register_model_kind(
    ModelKind("torchscript", "a TorchScript file (torch.jit.save), (B, C, h, w) logits", _torchscript, PIXEL_OPTIONS)
)
register_model_kind(
    ModelKind("exported", "a torch.export program (.pt2), (B, C, h, w) logits", _exported, PIXEL_OPTIONS)
)
register_model_kind(
    ModelKind("onnx", "an ONNX model run by onnxruntime (CPU or CUDA), (B, C, h, w) logits", _onnx, PIXEL_OPTIONS)
)
