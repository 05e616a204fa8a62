"""The ``official`` layout: the tue-mps/eomt Lightning module's state dict.

Keys: ``network.encoder.backbone.*`` (timm's ViT), ``network.q.weight``, ``network.class_head``,
``network.mask_head.{0,2,4}``, ``network.upscale.N``, ``network.attn_mask_probs``,
``network.encoder.pixel_mean/std`` for pixels in 0..1 and the loss's ``criterion.empty_weight``; in a Lightning
``.ckpt`` (under ``"state_dict"``) or a plain ``.bin`` / ``.pt`` / ``.pth`` (possibly under ``"state_dict"`` or
``"model"``). The file carries no configuration: it is read off the shapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from roadanomaly.errors import UserError
from roadanomaly.models.eomt import EoMT, EoMTConfig
from roadanomaly.models.eomt_layouts.base import CheckpointLayout, Decoded, Source
from roadanomaly.models.eomt_layouts.common import (
    PIXEL_STATS,
    Shapes,
    Size,
    StateDict,
    empty_weight,
    float_state,
    pixel_stat,
    shapes,
)
from roadanomaly.models.eomt_layouts.shapes import infer_config

OFFICIAL_SUFFIXES: tuple[str, ...] = (".ckpt", ".bin", ".pt", ".pth")
_PREFIXES = (("network.encoder.backbone.", "encoder."), ("network.encoder.", ""), ("network.", ""))
_BACKBONE = "network.encoder.backbone."


def official_to_ours(sd: StateDict) -> StateDict:
    """Official names -> ours (pixel statistics 0..1 -> 0..255); ``criterion.*`` is dropped."""
    out: StateDict = {}
    for key, value in sd.items():
        if key.startswith("criterion."):
            continue
        key = key if key.startswith("network.") else "network." + key
        for old, new in _PREFIXES:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value * 255 if key in PIXEL_STATS else value
    return out


def ours_to_official(sd: StateDict, config: EoMTConfig) -> StateDict:
    """Our names -> official names, with the loss's ``criterion.empty_weight`` the official module expects."""
    out: StateDict = {}
    for key, value in sd.items():
        if key in PIXEL_STATS:
            out[f"network.encoder.{key}"] = value / 255
        elif key.startswith("encoder."):
            out[_BACKBONE + key[len("encoder.") :]] = value
        else:
            out["network." + key] = value
    out["criterion.empty_weight"] = empty_weight(config.num_classes)
    return out


class OfficialLayout(CheckpointLayout):
    name = "official"
    description = "tue-mps/eomt weights: a Lightning .ckpt or a .bin/.pt/.pth state dict (network.encoder.backbone.*)"
    writable = True
    file_suffixes = OFFICIAL_SUFFIXES

    def detect(self, source: Source) -> bool:
        return not source.is_folder and any(k.startswith(("network.", "encoder.backbone.")) for k in source.state_dict)

    def read(self, source: Source, img_size: Size | None = None, heads: int | None = None, **options: Any) -> Decoded:
        raw = source.state_dict
        ours = official_to_ours(raw)
        config = infer_config(ours, source.where, img_size, heads)
        found = {(k if k.startswith("network.") else "network." + k): v for k, v in raw.items()
                 if not k.startswith("criterion.")}  # fmt: skip
        if _BACKBONE + "pos_embed" in found:  # compare the table with its class position folded into the CLS token
            found[_BACKBONE + "pos_embed"] = ours["encoder.pos_embed"]
            found[_BACKBONE + "cls_token"] = ours["encoder.cls_token"]
        for key in PIXEL_STATS:  # optional: ImageNet when absent
            ours.setdefault(key, pixel_stat(key))
        return Decoded(ours, config, found, optional=frozenset(f"network.encoder.{k}" for k in PIXEL_STATS))

    def expected_keys(self, model: EoMT) -> Shapes:
        official = ours_to_official(model.state_dict(), model.config)
        return {k: s for k, s in shapes(official).items() if not k.startswith("criterion.")}

    def write(self, model: EoMT, dst: Path) -> Path:
        """One file; a ``.ckpt`` wraps the state dict under ``"state_dict"`` as Lightning does."""
        if dst.suffix not in OFFICIAL_SUFFIXES or dst.is_dir():
            raise UserError(dst, f"the official layout is one file ending {', '.join(OFFICIAL_SUFFIXES)}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        official = ours_to_official(float_state(model), model.config)
        torch.save({"state_dict": official} if dst.suffix == ".ckpt" else official, dst)
        return dst
