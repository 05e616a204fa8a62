"""Reading checkpoint files into flat state dicts and loading them strictly, with errors a user can act on."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from roadanomaly.errors import UserError, first_line


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    """``torch.load`` with ``weights_only=True``; full unpickling only when the user trusts the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file
        damage = _damage(path)
        if damage is not None:
            raise UserError(path, damage) from None
        if not zipfile.is_zipfile(path):
            raise UserError(path, f"not a readable PyTorch checkpoint ({first_line(error)})") from None
        if not trust_pickle:
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
            what = f"an object of type {found[1]}" if found else "objects other than tensors"
            raise UserError(
                path,
                f"holds more than plain tensors ({what}); if it comes from a source you trust, "
                "allow full unpickling (trust_pickle=True, --trust-pickle)",
            ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001
        raise UserError(path, f"not a readable PyTorch checkpoint ({first_line(error)})") from None


def _damage(path: Path) -> str | None:
    """What is plainly wrong with a file torch cannot load (empty, cut short, a Git LFS pointer, not a checkpoint)."""
    with path.open("rb") as file:
        head = file.read(64)
    if not head:
        return "empty file (0 bytes)"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the weights (fetch them with git lfs pull)"
    if head.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(path):
        return "not a readable PyTorch checkpoint (truncated: the zip archive ends early)"
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        return "not a PyTorch checkpoint (neither a zip archive nor a pickle)"
    return None


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    """Find the state dict inside a checkpoint object and drop torch.compile / DDP name wrappers."""
    for _ in range(3):
        if isinstance(obj, dict):
            nested = [k for k in ("state_dict", "model", "teacher") if isinstance(obj.get(k), dict)]
            if nested and not any(isinstance(v, Tensor) for v in obj.values()):
                obj = obj[nested[0]]
                continue
        break
    if not isinstance(obj, dict) or not obj:
        raise UserError(path, "holds no state dict (expected a dict of tensors, or one under 'state_dict')")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if not_tensors:
        shown = ", ".join(sorted(map(str, not_tensors))[:5])
        raise UserError(path, f"is not a state dict: non-tensor entries {shown}")
    sd = {str(k).replace("._orig_mod", "").replace("_orig_mod.", ""): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def read_state_dict(path: str | Path, trust_pickle: bool = False) -> dict[str, Tensor]:
    """The raw state dict in a weights file (``.safetensors``, ``.ckpt``, ``.bin``, ``.pt``, ``.pth``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(path, "no such file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise UserError(path, f"not a readable safetensors file ({error})") from None
    return _unwrap(_torch_load(path, trust_pickle), path)


def strip_prefix_before(state: Mapping[str, Tensor], anchor: str) -> dict[str, Tensor]:
    """Remove whatever prefix stands before ``anchor`` (e.g. ``module.`` or ``model.``) from the keys that carry it.

    The prefix is read off the first key that ends with ``anchor``; keys without that prefix are dropped.
    """
    prefix = next((k[: -len(anchor)] for k in state if k.endswith(anchor)), None)
    if prefix is None:
        return dict(state)
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def describe_mismatch(
    expected: Mapping[str, Tensor | tuple[int, ...]], given: Mapping[str, Tensor], limit: int = 4
) -> str | None:
    """One line naming missing keys, unexpected keys and shape mismatches; None when the state fits exactly.

    ``expected`` maps each key to a tensor or to its shape.
    """
    shape_of = {k: tuple(v.shape) if isinstance(v, Tensor) else tuple(v) for k, v in expected.items()}
    missing = [k for k in shape_of if k not in given]
    unexpected = [k for k in given if k not in shape_of]
    shapes = [
        f"{k} {tuple(given[k].shape)} vs expected {shape}"
        for k, shape in shape_of.items()
        if k in given and tuple(given[k].shape) != shape
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
