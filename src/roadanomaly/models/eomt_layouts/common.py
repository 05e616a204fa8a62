"""Helpers every layout shares: JSON and folder weights (shards included), writing folders, pixel statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from roadanomaly.errors import UserError
from roadanomaly.models.eomt import IMAGENET_MEAN, IMAGENET_STD
from roadanomaly.models.state_dicts import read_state_dict

StateDict = dict[str, Tensor]
Shapes = dict[str, tuple[int, ...]]
Size = tuple[int, int]

WEIGHTS_FILE = "model.safetensors"
SHOWN = 5  # keys listed per kind of difference in an error
NO_OBJECT_WEIGHT = 0.1  # criterion.empty_weight[-1] written for the official and HF layouts
PIXEL_STATS: tuple[str, str] = ("pixel_mean", "pixel_std")


def first_keys(keys: list[str] | set[str]) -> str:
    """The first few of ``keys`` in order, and how many more there are, for an error message."""
    keys = sorted(keys)
    more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; anything else is a UserError naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(path, f"not readable JSON ({error})") from None
    if not isinstance(data, dict):
        raise UserError(path, "expected a JSON object")
    return data


def write_json(data: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def read_folder_weights(folder: Path) -> StateDict:
    """``model.safetensors``, its shards (``model.safetensors.index.json``) or an older ``pytorch_model.bin``."""
    if (folder / WEIGHTS_FILE).is_file():
        return read_state_dict(folder / WEIGHTS_FILE)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map", {})
        sd: StateDict = {}
        for shard in sorted(set(weight_map.values())):
            sd.update(read_state_dict(folder / shard))
        return sd
    if (folder / "pytorch_model.bin").is_file():
        return read_state_dict(folder / "pytorch_model.bin")
    raise UserError(folder, f"folder has no {WEIGHTS_FILE}")


def save_safetensors(sd: StateDict, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}, str(path), metadata={"format": "pt"})


def check_folder_target(dst: Path, layout: str) -> None:
    """A folder layout cannot be written where a file of that name stands."""
    if dst.exists() and not dst.is_dir():
        raise UserError(dst, f"the {layout} layout is a folder, and a file of this name exists")


def float_state(model: nn.Module) -> StateDict:
    """The model's state dict as float32 CPU tensors, as every layout writes it."""
    return {k: v.detach().float().cpu() for k, v in model.state_dict().items()}


def shapes(sd: StateDict) -> Shapes:
    return {k: tuple(v.shape) for k, v in sd.items()}


def pixel_stat(name: str, value: Tensor | None = None) -> Tensor:
    """``pixel_mean`` / ``pixel_std`` for 0..255 pixels as a (1, 3, 1, 1) buffer; ImageNet's when ``value`` is None."""
    default = IMAGENET_MEAN if name == "pixel_mean" else IMAGENET_STD
    return (torch.tensor(default) * 255 if value is None else value).reshape(1, 3, 1, 1).float()


def empty_weight(num_classes: int) -> Tensor:
    """The loss's class weights (``criterion.empty_weight``) the official and HF modules carry: 1, and 0.1 for none."""
    weight = torch.ones(num_classes + 1)
    weight[-1] = NO_OBJECT_WEIGHT
    return weight
