"""The ``dinov2`` layout (read-only): DINOv2 backbone weights that initialise the encoder of a fresh EoMT.

timm names, or the facebookresearch ones (``register_tokens``, ``mask_token``), possibly under ``backbone.`` in a
training checkpoint. The patch kernel is resized with FlexiViT's pseudo-inverse (so a patch's embedding is kept:
<resize(x), w_new> = <x, w_old>) and the position grid bicubically, as timm does; queries and heads stay random.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from roadanomaly.errors import UserError
from roadanomaly.models.eomt import SIZES, EoMT, EoMTConfig
from roadanomaly.models.eomt_layouts.base import CheckpointLayout, Decoded, Source
from roadanomaly.models.eomt_layouts.common import Shapes, Size, StateDict, first_keys, shapes
from roadanomaly.models.eomt_layouts.shapes import square_side
from roadanomaly.models.vit import resample_grid

_ENCODER = "encoder."


def _bicubic_resize_matrix(old: int, new: int) -> Tensor:
    """R with resize(x).flatten() = R @ x.flatten() for an old x old patch resized bicubically to new x new."""
    basis = torch.eye(old * old, dtype=torch.float64).reshape(old * old, 1, old, old)
    resized = F.interpolate(basis, size=(new, new), mode="bicubic", align_corners=False, antialias=True)
    return resized.reshape(old * old, new * new).T


def resample_patch_kernel(weight: Tensor, new: int) -> Tensor:
    """(D, C, p, p) -> (D, C, new, new), FlexiViT's pseudo-inverse resize: w_new = pinv(R^T) w_old.

    For any patch x, <resize(x), w_new> = <x, w_old> when upsampling (R^T has full row rank), so the patch
    embedding of an image is unchanged when its patches are resized with the kernel.
    """
    old = weight.shape[-1]
    if old == new:
        return weight
    resize = _bicubic_resize_matrix(old, new)  # (new^2, old^2)
    pinv = torch.linalg.pinv(resize.T)  # (new^2, old^2)
    flat = weight.double().reshape(-1, old * old)
    return (flat @ pinv.T).reshape(*weight.shape[:2], new, new).to(weight.dtype)


def dinov2_names(sd: StateDict) -> StateDict:
    """timm / facebookresearch DINOv2 names -> timm names; of a training checkpoint only ``backbone.*`` is kept."""
    if any(k.startswith("backbone.") for k in sd):
        sd = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    return {("reg_token" if k == "register_tokens" else k): v for k, v in sd.items() if k != "mask_token"}


def dinov2_encoder_state(sd: StateDict, config: EoMTConfig, where: Path) -> StateDict:
    """A DINOv2 backbone state dict -> our ``encoder.*`` weights for ``config`` (grid and patch resampled)."""
    sd = dinov2_names(sd)
    out = dict(sd)
    pos = sd.get("pos_embed")
    if pos is not None and "cls_token" in sd:
        n = pos.shape[1]
        if square_side(n) is None and square_side(n - 1) is not None:
            out["cls_token"] = sd["cls_token"] + pos[:, :1]
            pos = pos[:, 1:]
        side = square_side(pos.shape[1])
        if side is None:
            raise UserError(where, f"DINOv2 pos_embed has {n} positions, not a square grid (+1 class position)")
        out["pos_embed"] = resample_grid(pos.float(), (side, side), config.grid).to(pos.dtype)
    kernel = sd.get("patch_embed.proj.weight")
    if kernel is not None and kernel.shape[-1] != config.patch:
        out["patch_embed.proj.weight"] = resample_patch_kernel(kernel, config.patch)
    return {_ENCODER + k: v for k, v in out.items()}


class DINOv2Layout(CheckpointLayout):
    name = "dinov2"
    description = (
        "DINOv2 backbone weights (timm or facebookresearch names): a fresh EoMT is built on them, the 14x14 patch"
        " kernel resized to 16x16 (FlexiViT pseudo-inverse) and the position grid bicubically; queries and heads"
        " are randomly initialised (see --num-classes, --num-queries, --img-size)"
    )

    def detect(self, source: Source) -> bool:
        if source.is_folder:
            return False
        bare = dinov2_names(source.state_dict)
        return "cls_token" in bare and any(k.startswith("blocks.") for k in bare)

    def read(
        self,
        source: Source,
        img_size: Size | None = None,
        heads: int | None = None,
        num_classes: int = 19,
        num_q: int = 100,
        num_blocks: int | None = None,
        patch: int = 16,
        class_names: tuple[str, ...] | None = None,
        **options: Any,
    ) -> Decoded:
        """The encoder's weights for a fresh EoMT of ``img_size`` (default 1024 x 1024) with these heads."""
        if options:
            raise TypeError(f"unknown DINOv2 options: {', '.join(sorted(options))}")
        sd = dinov2_names(source.state_dict)
        missing = [k for k in ("cls_token", "pos_embed", "patch_embed.proj.weight") if k not in sd]
        if missing:
            raise UserError(source.path, f"not a DINOv2 backbone: missing {first_keys(missing)}")
        width = sd["cls_token"].shape[-1]
        blocks = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
        if not blocks or "blocks.0.mlp.fc1.weight" not in sd:
            raise UserError(source.path, f"not a DINOv2 backbone with plain MLP blocks: keys {first_keys(list(sd))}")
        preset = next((p for p in SIZES.values() if p["width"] == width), None)
        reg, depth = sd.get("reg_token"), max(blocks) + 1
        try:
            config = EoMTConfig(
                width=width,
                depth=depth,
                heads=heads or max(1, width // 64),
                patch=patch,
                num_registers=0 if reg is None else reg.shape[1],
                img_size=img_size or (1024, 1024),
                num_classes=num_classes,
                num_q=num_q,
                num_blocks=num_blocks or (preset["num_blocks"] if preset else min(4, depth)),
                mlp_ratio=sd["blocks.0.mlp.fc1.weight"].shape[0] / width,
                class_names=class_names,
            )
        except ValueError as error:
            raise UserError(source.path, f"cannot build EoMT on these weights: {error}") from None
        encoder = dinov2_encoder_state(sd, config, source.path)
        found = {k[len(_ENCODER) :]: v for k, v in encoder.items()}
        return Decoded(encoder, config, found, partial=True)

    def expected_keys(self, model: EoMT) -> Shapes:
        """The encoder's keys in timm names (the rest of the model is not in a DINOv2 file)."""
        return {k[len(_ENCODER) :]: s for k, s in shapes(model.state_dict()).items() if k.startswith(_ENCODER)}
