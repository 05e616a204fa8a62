"""Inference backends: onnxruntime drop-ins for the ERFNet and EoMT networks, and a fast eager ERFNet.

The drop-ins stand where the PyTorch network stands in the predictors, so :class:`ERFNetPredictor` and
:class:`EoMTPredictor` run unchanged on them:

- :class:`OnnxERFNet`: ``net(x)`` -> logits, with ``num_classes`` and ``void_channel``;
- :class:`OnnxEoMT`: ``net.config`` and ``net.forward_all(x)`` -> :class:`EoMTOutput` holding the final prediction.

Weights are an ``.onnx`` file written by ``roadanomaly export`` (its metadata describes the model), or any
checkpoint the PyTorch loaders read, exported on the fly to a temporary folder (tens of seconds, once).
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn

from roadanomaly.errors import UserError
from roadanomaly.export import META_CLASSES, META_CONFIG, META_KIND, export_onnx, read_metadata
from roadanomaly.inference.eomt import EoMTPredictor, QueryHead
from roadanomaly.inference.erfnet import ERFNetPredictor
from roadanomaly.models.eomt import EoMTConfig, EoMTOutput

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
_TEMP_DIRS: list[str] = []


def _onnx_session(path: Path, device: str, threads: int | None):
    from roadanomaly.inference.onnx_session import OnnxSession, _import_onnxruntime

    available = _import_onnxruntime().get_available_providers()
    if str(device).startswith("cuda") and "CUDAExecutionProvider" not in available:
        raise UserError(None, f"device {device!r} asked for, but this onnxruntime has no CUDA provider "
                              "(install onnxruntime-gpu)")  # fmt: skip
    return OnnxSession(path, device, threads=threads or torch.get_num_threads())


def _checked_metadata(path: Path, kind: str) -> dict[str, str]:
    meta = read_metadata(path)
    found = meta.get(META_KIND)
    if found is None:
        raise UserError(path, "has no roadanomaly metadata: write it with `roadanomaly export`")
    if found != kind:
        raise UserError(path, f"holds an exported {found}, not an {kind}")
    return meta


def _scratch_file(name: str) -> Path:
    """A path in a temporary folder removed when the process exits."""
    folder = tempfile.mkdtemp(prefix="roadanomaly-onnx-")
    _TEMP_DIRS.append(folder)
    return Path(folder) / name


@atexit.register
def _remove_scratch() -> None:
    for folder in _TEMP_DIRS:
        shutil.rmtree(folder, ignore_errors=True)


def onnx_file(weights: str | Path, model: nn.Module | None = None) -> Path:
    """``weights`` itself when it is an ``.onnx`` file, else ``model`` exported to a temporary file."""
    weights = Path(weights)
    if weights.suffix == ".onnx":
        if not weights.is_file():
            raise UserError(weights, "no such file")
        return weights
    if model is None:
        raise ValueError("a model is needed to export weights that are not an .onnx file")
    return export_onnx(model, _scratch_file(weights.stem + ".onnx"))


class OnnxERFNet(nn.Module):
    """An exported ERFNet on onnxruntime: ``net(x (B, 3, H, W) in [0, 1])`` -> logits on ``x``'s device."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        meta = _checked_metadata(self.path, "erfnet")
        self.num_classes = int(meta[META_CLASSES])
        self.session = _onnx_session(self.path, device, threads)

    @property
    def void_channel(self) -> int | None:
        return 19 if self.num_classes == 20 else None

    def forward(self, x: Tensor) -> Tensor:
        (logits,) = self.session(x.float())
        return logits.to(x.device)


class OnnxEoMT(nn.Module):
    """An exported EoMT on onnxruntime, with the ``config`` and ``forward_all`` that :class:`EoMTPredictor` uses."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        meta = _checked_metadata(self.path, "eomt")
        self.config = EoMTConfig.from_dict(json.loads(meta[META_CONFIG]))
        self.session = _onnx_session(self.path, device, threads)

    def forward_all(
        self, x: Tensor, masked_attn: bool | None = None, keep_block_input: int | None = None
    ) -> EoMTOutput:
        """Crops (B, 3, H, W) in 0..255 -> the final prediction (the graph has no masked attention)."""
        if masked_attn:
            raise ValueError("the exported EoMT has no masked attention")
        if keep_block_input is not None:
            raise ValueError("the exported EoMT gives only its final prediction, not the input of a block")
        mask_logits, class_logits, queries = (t.to(x.device) for t in self.session(x.float()))
        return EoMTOutput([mask_logits], [class_logits], queries)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        out = self.forward_all(x)
        return out.mask_logits, out.class_logits


def load_erfnet_network(
    weights: str | Path, backend: str = "torch", device: str = "cpu", trust_pickle: bool = False, fused: bool = False
) -> nn.Module:
    """The ERFNet network of ``weights`` on ``backend``; ``fused`` (torch only): folded BN, channels-last."""
    from roadanomaly.models.erfnet_checkpoints import load_erfnet
    from roadanomaly.models.erfnet_fused import fuse_erfnet

    _check_backend(backend)
    if backend == "onnxruntime":
        if fused:
            raise UserError(None, "fused applies to the torch backend (onnxruntime folds batch norms itself)")
        model = None if Path(weights).suffix == ".onnx" else load_erfnet(weights, trust_pickle=trust_pickle)
        return OnnxERFNet(onnx_file(weights, model), device)
    model = load_erfnet(weights, trust_pickle=trust_pickle)
    return fuse_erfnet(model) if fused else model


def load_erfnet_predictor_on(
    weights: str | Path, backend: str = "torch", device: str = "cpu", trust_pickle: bool = False, fused: bool = False
) -> ERFNetPredictor:
    """An :class:`ERFNetPredictor` whose network runs on ``backend``."""
    net = load_erfnet_network(weights, backend, device, trust_pickle, fused)
    info = {"weights": str(weights), "backend": backend, **({"fused": True} if fused else {})}
    return ERFNetPredictor(net, device=device, info=info)  # type: ignore[arg-type]


def load_eomt_predictor_on(
    weights: str | Path,
    backend: str = "torch",
    device: str = "cpu",
    crop_size: int | None = None,
    autocast: str | None = None,
    query_heads: dict[str, QueryHead] | None = None,
    window_batch: int = 4,
    img_size: tuple[int, int] | None = None,
    trust_pickle: bool = False,
) -> EoMTPredictor:
    """An :class:`EoMTPredictor` whose network runs on ``backend`` (``.onnx`` weights or any EoMT checkpoint)."""
    from roadanomaly.inference.eomt import load_eomt_predictor

    _check_backend(backend)
    if backend == "torch":
        predictor = load_eomt_predictor(weights, device, crop_size, autocast, query_heads, window_batch, img_size,
                                        trust_pickle)  # fmt: skip
        predictor.info["backend"] = "torch"
        return predictor
    if autocast not in (None, "fp32"):
        raise UserError(None, "--autocast applies to the torch backend only (the ONNX graph is float32)")
    model, info = None, {"weights": str(weights), "backend": backend}
    if Path(weights).suffix != ".onnx":
        from roadanomaly.models.eomt_checkpoints import load_trained_eomt

        model, layout = load_trained_eomt(weights, img_size, trust_pickle)
        info["layout"] = layout
    net = OnnxEoMT(onnx_file(weights, model), device)
    return EoMTPredictor(net, device, crop_size, None, query_heads, window_batch, info)  # type: ignore[arg-type]


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise UserError(None, f"unknown backend {backend!r} (use {' or '.join(BACKENDS)})")

