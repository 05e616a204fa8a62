"""Bring your own model: per-pixel classifiers from a Python file, TorchScript, torch.export or ONNX.

Every kind yields a :class:`~roadanomaly.inference.pixel_model.LogitsPredictor`, so the shared options
(``void_channel``, ``mean``, ``std``, ``pad_to``) mean the same for all of them:

- ``python:FILE.py:NAME``: imports FILE.py, builds ``NAME(**model_kwargs)`` and loads the weights strictly
  (``module.`` prefixes, Lightning ``state_dict`` nesting and a Lightning attribute prefix like ``model.`` are
  handled as for ERFNet);
- ``torchscript``: a ``torch.jit.save`` file;
- ``exported``: a ``torch.export.save`` program (``.pt2``);
- ``onnx``: an ONNX file (onnxruntime; an external data file beside it works).

Models exported with a fixed input height and width get their input resized to it (and the logits back).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from hashlib import sha1
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch
from torch import Tensor, nn

from roadanomaly.errors import UserError, first_line
from roadanomaly.inference.pixel_model import LogitsPredictor, check_device, select_logits
from roadanomaly.models.state_dicts import load_strict, read_state_dict


# --- python:FILE.py:NAME ---------------------------------------------------------------------------------------


def parse_target(target: str) -> tuple[Path, str]:
    """``"path/to/file.py:NAME"`` -> (path, NAME); the name follows the last colon."""
    file, sep, name = target.rpartition(":")
    if not sep or not file or not name.isidentifier():
        raise UserError(None, f"--model python:{target}: expected python:FILE.py:NAME (NAME a class or function)")
    return Path(file), name


def parse_model_kwargs(model_kwargs: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """``--model-kwargs``: a JSON object (string) or a mapping, as keyword arguments."""
    if model_kwargs is None:
        return {}
    if isinstance(model_kwargs, str):
        try:
            model_kwargs = json.loads(model_kwargs)
        except json.JSONDecodeError as error:
            raise UserError(None, f"--model-kwargs is not valid JSON ({error})") from None
    if not isinstance(model_kwargs, Mapping):
        example, given = '\'{"num_classes": 20}\'', type(model_kwargs).__name__
        raise UserError(None, f"--model-kwargs must be a JSON object such as {example}, not a {given}")
    return dict(model_kwargs)


def import_model_file(path: Path) -> ModuleType:
    """Import the user's Python file as a module of its own (its folder is importable while it loads)."""
    if not path.is_file():
        raise UserError(path, "no such file")
    if path.suffix != ".py":
        raise UserError(path, "not a Python file (expected FILE.py)")
    resolved = path.resolve()
    name = f"roadanomaly_user_model_{resolved.stem}_{sha1(str(resolved).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise UserError(path, "cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(resolved.parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        sys.modules.pop(name, None)
        raise UserError(path, f"cannot import: SyntaxError: {error.msg} (line {error.lineno})") from None
    except BaseException as error:  # noqa: BLE001 - the user's module may raise anything, SystemExit included
        sys.modules.pop(name, None)
        if isinstance(error, KeyboardInterrupt):
            raise
        raise UserError(path, f"cannot import: {type(error).__name__}: {first_line(error)}") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def build_user_model(path: Path, name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """``NAME(**kwargs)`` from the user's file, checked to be an ``nn.Module``."""
    module = import_model_file(path)
    factory = getattr(module, name, None)
    if factory is None:
        defined = sorted(
            k for k, v in vars(module).items()
            if callable(v) and not k.startswith("_") and getattr(v, "__module__", None) == module.__name__
        )  # fmt: skip
        raise UserError(path, f"defines no {name!r} (defined here: {', '.join(defined) or 'nothing callable'})")
    if not callable(factory):
        raise UserError(path, f"{name!r} is a {type(factory).__name__}, not a class or function")
    call = f"{name}(**{json.dumps(dict(kwargs))})" if kwargs else f"{name}()"
    try:
        model = factory(**kwargs)
    except Exception as error:  # noqa: BLE001
        raise UserError(path, f"{call} failed: {type(error).__name__}: {first_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise UserError(path, f"{call} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def fit_prefix(expected: Sequence[str], state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop the prefix (``model.``, ``net.``) a wrapper such as a LightningModule put before the model's own keys.

    The prefix is read off the keys that end with the model's first or last key; the one under which most of the
    model's keys are found wins, if it beats no prefix at all. Keys without it are dropped (the wrapper's other parts).
    """
    if not expected:
        return dict(state)
    best, best_count = "", sum(k in state for k in expected)
    for anchor in dict.fromkeys((expected[0], expected[-1])):
        for key in state:
            if key.endswith("." + anchor):
                prefix = key[: -len(anchor)]
                count = sum(prefix + k in state for k in expected)
                if count > best_count:
                    best, best_count = prefix, count
    if not best:
        return dict(state)
    return {k[len(best) :]: v for k, v in state.items() if k.startswith(best)}


def load_python_model(
    path: Path,
    name: str,
    weights: Path,
    model_kwargs: str | Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
) -> nn.Module:
    """Build ``NAME(**model_kwargs)`` from ``path`` and load ``weights`` into it strictly (eval mode)."""
    kwargs = parse_model_kwargs(model_kwargs)
    model = build_user_model(path, name, kwargs)
    state = read_state_dict(weights, trust_pickle)
    state = fit_prefix(list(model.state_dict()), state)
    load_strict(model, state, weights)
    return model.eval()


# --- TorchScript and torch.export ------------------------------------------------------------------------------


def guess_format(path: Path) -> str | None:
    """What a file given to the wrong kind looks like (a torch zip archive of some sort), for the error message."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(n.endswith("/archive_format") for n in names):
        return "it is a torch.export program: use --model exported"
    if any("/code/__torch__/" in n for n in names):
        return "it is a TorchScript file: use --model torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "it is a torch.save checkpoint: use --model python:FILE.py:NAME, or erfnet/eomt"
    return None



def load_torchscript(path: Path, device: str) -> torch.jit.ScriptModule:
    """A ``torch.jit.save`` file, loaded onto ``device`` in eval mode."""
    if not path.is_file():
        raise UserError(path, "no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device)
    except Exception as error:  # noqa: BLE001 - torch raises RuntimeError and others for a foreign file
        raise UserError(path, f"not a TorchScript file ({guess_format(path) or first_line(error)})") from None
    return module.eval()


@contextmanager
def _quiet_logger(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_exported(path: Path, device: str) -> tuple[Callable[[Tensor], Any], list[Any]]:
    """A ``torch.export.save`` program: its callable module on ``device`` and its input's declared shape."""
    if not path.is_file():
        raise UserError(path, "no such file")
    try:
        with _quiet_logger("torch.export"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path))
    except Exception as error:  # noqa: BLE001
        raise UserError(path, f"not a torch.export program ({guess_format(path) or first_line(error)})") from None
    if torch.device(device).type != "cpu":
        from torch.export.passes import move_to_device_pass

        program = move_to_device_pass(program, device)
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    user_inputs = list(program.graph_signature.user_inputs)
    if len(user_inputs) != 1:
        raise UserError(path, f"the program takes {len(user_inputs)} inputs, expected one image batch")
    value = placeholders[user_inputs[0]].meta.get("val")
    shape = [d if isinstance(d, int) else None for d in value.shape] if value is not None else []
    return program.module(), shape


# --- shared ----------------------------------------------------------------------------------------------------


def static_input(shape: Sequence[Any], source: Path) -> tuple[tuple[int, int] | None, bool]:
    """From a declared NCHW input shape: the fixed (H, W) if both are fixed, and whether the batch is fixed at 1."""
    if not shape:
        return None, False
    if len(shape) != 4:
        raise UserError(source, f"the model input has shape {list(shape)}, expected (B, 3, H, W) images")
    if isinstance(shape[1], int) and shape[1] != 3:
        raise UserError(source, f"the model input has {shape[1]} channels, expected 3 (RGB)")
    fixed = tuple(shape[2:]) if all(isinstance(d, int) for d in shape[2:]) else None
    return fixed, shape[0] == 1  # type: ignore[return-value]


def one_at_a_time(forward: Callable[[Tensor], Any]) -> Callable[[Tensor], Any]:
    """Run ``forward`` on each image of a batch separately (models exported for batch size 1)."""

    def run(x: Tensor) -> Any:
        if x.shape[0] == 1:
            return forward(x)
        return torch.cat([select_logits(forward(x[i : i + 1])) for i in range(x.shape[0])])

    return run


def _predictor(
    forward: Callable[[Tensor], Any],
    device: str,
    source: Path,
    info: dict[str, Any],
    void_channel: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    pad_to: int | None = None,
    input_size: tuple[int, int] | None = None,
) -> LogitsPredictor:
    shown = {"void_channel": void_channel, "mean": mean, "std": std, "pad_to": pad_to, "input_size": input_size}
    info = {**info, **{k: list(v) if isinstance(v, (tuple, list)) else v for k, v in shown.items() if v is not None}}
    return LogitsPredictor(
        forward, device, void_channel=void_channel, mean=mean, std=std, pad_to=pad_to, input_size=input_size,
        source=source, user_model=True, info=info,
    )  # fmt: skip


# --- the kinds' builders ---------------------------------------------------------------------------------------


def load_python_predictor(
    weights: str | Path,
    target: str,
    device: str = "cpu",
    model_kwargs: str | Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    **shared: Any,
) -> LogitsPredictor:
    """``--model python:FILE.py:NAME --weights W``: the user's module with its weights, as a predictor."""
    device = check_device(device)
    path, name = parse_target(target)
    model = load_python_model(path, name, Path(weights), model_kwargs, trust_pickle).to(device)
    info = {"name": "python", "file": str(path), "class": name, "weights": str(weights)}
    if model_kwargs is not None:
        info["model_kwargs"] = parse_model_kwargs(model_kwargs)
    return _predictor(model, device, path, info, **shared)


def load_torchscript_predictor(weights: str | Path, device: str = "cpu", trust_pickle: bool = False, **shared: Any):
    """``--model torchscript --weights net.pt``."""
    device = check_device(device)
    module = load_torchscript(Path(weights), device)
    return _predictor(module, device, Path(weights), {"name": "torchscript", "weights": str(weights)}, **shared)


def load_exported_predictor(weights: str | Path, device: str = "cpu", trust_pickle: bool = False, **shared: Any):
    """``--model exported --weights net.pt2`` (torch.export)."""
    device = check_device(device)
    path = Path(weights)
    forward, shape = load_exported(path, device)
    size, single = static_input(shape, path)
    if single:
        forward = one_at_a_time(forward)
    info = {"name": "exported", "weights": str(weights)}
    return _predictor(forward, device, path, info, input_size=size, **shared)


def load_onnx_predictor(weights: str | Path, device: str = "cpu", trust_pickle: bool = False, **shared: Any):
    """``--model onnx --weights net.onnx`` (onnxruntime; the output named ``out`` if any, else the first)."""
    from roadanomaly.inference.onnx_session import OnnxSession

    device = check_device(device)
    path = Path(weights)
    try:
        session = OnnxSession(path, device)
    except UserError as error:
        guess = guess_format(path) if path.is_file() else None
        if guess is None:
            raise
        raise UserError(path, f"not a readable ONNX model ({guess})") from None
    if len(session.input_names) != 1:
        raise UserError(path, f"the model takes {len(session.input_names)} inputs, expected one image batch")
    size, single = static_input(session.input_shapes[0], path)
    index = session.output_names.index("out") if "out" in session.output_names else 0

    def forward(x: Tensor) -> Tensor:
        return session(x)[index]

    info = {"name": "onnx", "weights": str(weights), "providers": session.providers}
    return _predictor(one_at_a_time(forward) if single else forward, device, path, info, input_size=size, **shared)
