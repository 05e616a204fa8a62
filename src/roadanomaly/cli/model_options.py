"""The options that choose and load a model, shared by every command that runs one (evaluate, predict, ...)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from roadanomaly.errors import UserError
from roadanomaly.protocol import parse_size


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--weights`` and the options of the registered model kinds."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", default="erfnet",
                       help="model kind: erfnet (default), eomt, python:FILE.py:NAME, onnx, torchscript, exported")
    group.add_argument("--weights", required=True, type=Path,
                       help="checkpoint file (or, for EoMT, a Hugging Face / roadanomaly folder)")
    group.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    group.add_argument("--trust-pickle", action="store_true",
                       help="allow checkpoints that hold more than tensors (full unpickling: trusted files only)")
    group.add_argument("--model-kwargs", type=_json_object, metavar="JSON",
                       help="python: keyword arguments of the model class, e.g. '{\"num_classes\": 20}'")
    group.add_argument("--void-channel", type=int, metavar="N", help="per-pixel models: index of a void channel")
    group.add_argument("--mean", type=_three_floats, metavar="R,G,B",
                       help="per-pixel models: subtract this mean from RGB scaled to [0, 1] (default: none)")
    group.add_argument("--std", type=_three_floats, metavar="R,G,B",
                       help="per-pixel models: divide by this std after --mean (default: none)")
    group.add_argument("--pad-to", type=int, metavar="N",
                       help="per-pixel models: pad inputs to a multiple of N (outputs cropped back)")
    group.add_argument("--crop-size", type=int, help="EoMT: window size (default: the model's input size)")
    group.add_argument("--autocast", choices=("bf16", "fp16"), help="EoMT on CUDA: mixed-precision inference")
    group.add_argument("--backend", choices=("torch", "onnxruntime"),
                       help="erfnet, eomt: run the network on PyTorch (default) or onnxruntime (weights: a "
                       "'roadanomaly export' .onnx file, or a checkpoint exported on the fly)")
    group.add_argument("--head", type=Path, metavar="FILE",
                       help="EoMT: anomaly head file from 'roadanomaly train anomaly-head' (adds the methods "
                       "anomaly, anomaly_norm and rba_oe)")


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword options for :func:`roadanomaly.inference.load_predictor` (None = not given)."""
    names = ("trust_pickle", "model_kwargs", "void_channel", "mean", "std", "pad_to", "crop_size", "autocast",
             "head", "backend")
    return {name: getattr(args, name, None) for name in names}


def size_type(text: str) -> str:
    """argparse type of an evaluation size: ``native``, ``HxW`` or a shorter side (see protocol.parse_size)."""
    try:
        parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(None, f"--device {device} asked for, but no CUDA device is available")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"num_classes\": 20}}', got {text!r}")
    return value


def _three_floats(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.replace(" ", ",").split(",") if v)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers R,G,B (e.g. 0.485,0.456,0.406), got {text!r}")
    return values  # type: ignore[return-value]
