"""Reading checkpoint files into flat state dicts and loading them strictly, with errors a user can act on."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from roadanomaly.errors import UserError

NESTED_STATE_KEYS: tuple[str, ...] = ("state_dict", "model", "model_state_dict")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a ``.safetensors`` file or a torch checkpoint (plain state dict, or nested under ``state_dict``/``model``).

    Torch files are opened with ``weights_only=True``: no code inside a checkpoint is ever executed.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(path, "checkpoint file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(path, f"cannot read checkpoint ({first_line})") from None
    return _flatten(obj, path)


def _flatten(obj: object, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in NESTED_STATE_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _flatten(obj[key], path)
        tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
        if tensors:
            return tensors
    raise UserError(path, "no tensors found: not a state dict or a checkpoint holding one")


def strip_prefix_before(state: Mapping[str, Tensor], anchor: str) -> dict[str, Tensor]:
    """Remove whatever prefix stands before ``anchor`` (e.g. ``module.`` or ``model.``) from the keys that carry it.

    The prefix is read off the first key that ends with ``anchor``; keys without that prefix are dropped.
    """
    prefix = next((k[: -len(anchor)] for k in state if k.endswith(anchor)), None)
    if prefix is None:
        return dict(state)
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def describe_mismatch(expected: Mapping[str, Tensor], given: Mapping[str, Tensor], limit: int = 4) -> str | None:
    """One line naming missing keys, unexpected keys and shape mismatches; None when the state fits exactly."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {tuple(given[k].shape)} vs expected {tuple(expected[k].shape)}"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {title}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts) or None


def load_strict(module: nn.Module, state: Mapping[str, Tensor], source: str | Path) -> None:
    """Load ``state`` into ``module`` only if every key and shape matches; otherwise a UserError says what differs."""
    expected = module.state_dict()
    problem = describe_mismatch(expected, state)
    if problem:
        raise UserError(source, f"checkpoint does not fit the model: {problem}")
    module.load_state_dict(dict(state), strict=True)
